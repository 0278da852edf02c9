"""Fail-closed: the ruleset a kernel loads allows only what the policy allows.

Each compiled ruleset is loaded into a fresh network namespace and judged on
nft's JSON listing by tests/failclosed.py, against the compiler's model of
the policy: every golden ruleset and the examples (random valid policies:
tests/test_properties.py's kernel property).
The checker is itself tested on broken rulesets, one per way a ruleset can
fail open, so that a silent checker cannot pass for a clean ruleset: each is
the plan of BASE changed as data, then printed by the generators.
Needs root and iproute2 (network namespaces); skips otherwise.
"""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

import failclosed
from mailpubc.api import compile_path
from mailpubc.generate import json as nft_json, text
from mailpubc.plan import (ACCEPT, LINK_LOCAL, AddressMatch, Chain, ConntrackStatusMatch,
                           IcmpTypeMatch, InterfaceMatch, Jump, Masquerade, Origin, PortMatch,
                           Rule, Ruleset)
from strategies import policy_file

ROOT = Path(__file__).resolve().parent.parent
POLICIES = (sorted(p for p in (ROOT / "golden").glob("*/policy.yaml")
                   if (p.parent / "expected.nft").exists())
            + sorted((ROOT / "examples").glob("*.yaml")))
pytestmark = pytest.mark.usefixtures("namespaces_work")     # conftest: skips without them

# Everything a policy can ask for, with a reject and two drop policies.
BASE = """\
version: 1
firewall:
  timezone: Asia/Tokyo
  external:
    interface: eth0
    addresses: [198.51.100.10, 198.51.100.11]
  internal:
    interface: eth1
    networks: [10.1.0.0/24]
    address: 10.1.0.1
  policy: {input: reject, forward: drop, output: drop}
  management:
    ssh: [admins]
  log: {dropped: true, group: 3}
address_sets:
  admins: [192.0.2.0/28]
  relays: [10.1.0.25]
  partners: [192.0.2.64/26, 10.1.0.128/25]
services:
  smtp-alt: [tcp/2525]
schedules:
  office: {days: [mon, fri], hours: "22:00-06:00"}
publish:
  - {name: exchange, server: 10.1.0.25, external_address: 198.51.100.10, services: [smtp, imaps],
     limit: {new: 3/minute, burst: 4, concurrent: 2, ipv4_prefix: 24}}
  - {name: local, server: localhost, external_address: 198.51.100.11,
     services: [submission, {service: smtp-alt, server_port: 25}], allow_from: [partners],
     log: true}
  - {name: partner, server: 10.1.0.26, external_address: 198.51.100.10,
     services: [{service: smtp-alt, server_port: 25}], allow_from: partners, hairpin: true}
outbound:
  - {name: relay, from: relays, services: [smtp], schedule: office}
  - {name: resolver, from: localhost, services: [dns]}
"""


# -- breaking the plan of BASE: each edit fails when it finds nothing to break ----

def edit_chain(ruleset: Ruleset, name: str, change) -> Ruleset:
    assert name in [c.name for c in ruleset.chains], f"no chain {name}"
    return replace(ruleset, chains=tuple(change(c) if c.name == name else c
                                         for c in ruleset.chains))


def edit_rules(ruleset: Ruleset, chain: str, picks, change) -> Ruleset:
    """change(rule) for each rule of `chain` that `picks` chooses; None drops it."""
    def edit(c: Chain) -> Chain:
        assert any(picks(r) for r in c.rules), f"no such rule in {chain}: update the breakage"
        changed_rules = (change(r) if picks(r) else r for r in c.rules)
        return replace(c, rules=tuple(r for r in changed_rules if r is not None))
    return edit_chain(ruleset, chain, edit)


def add_rule(ruleset: Ruleset, chain: str, after, rule: Rule) -> Ruleset:
    """`rule` in `chain` right after the first rule `after` chooses."""
    def insert(c: Chain) -> Chain:
        at = next(i for i, r in enumerate(c.rules) if after(r)) + 1
        return replace(c, rules=c.rules[:at] + (rule,) + c.rules[at:])
    return edit_chain(ruleset, chain, insert)


def add_chain(ruleset: Ruleset, chain: Chain, before: str) -> Ruleset:
    at = [c.name for c in ruleset.chains].index(before)
    return replace(ruleset, chains=ruleset.chains[:at] + (chain,) + ruleset.chains[at:])


def widen_set(ruleset: Ruleset, name: str, network: str) -> Ruleset:
    assert name in [s.name for s in ruleset.sets], f"no set {name}"
    return replace(ruleset, sets=tuple(replace(s, intervals=(interval(network),))
                                       if s.name == name else s for s in ruleset.sets))


def parts(field: str, picks, change):
    """A rule change: change(part) for each part of the rule's `field`
    (matches or statements) that `picks` chooses; None drops the part."""
    def edit(rule: Rule) -> Rule:
        old = getattr(rule, field)
        assert any(picks(p) for p in old), f"no such part in {rule}: update the breakage"
        new = (change(p) if picks(p) else p for p in old)
        return replace(rule, **{field: tuple(p for p in new if p is not None)})
    return edit


def without(picks):
    return parts("matches", picks, lambda m: None)


def changed(picks, **fields):
    return parts("matches", picks, lambda m: replace(m, **fields))


def to_unpublished_server():
    """A rule change: its DNAT goes to 10.1.0.99, which no policy publishes."""
    return parts("statements", kind("nat"), lambda s: replace(s, address=ip_address("10.1.0.99")))


def kind(name: str, **fields):
    """Chooses the matches or statements of kind `name` with these field values."""
    return lambda p: p.kind == name and all(getattr(p, f) == v for f, v in fields.items())


def rule_of(origin_kind: str, name: str, service=None, having=None):
    """Chooses the rules from this origin that hold the match `having` (if given)."""
    return lambda r: (r.origin == Origin(origin_kind, name, service)
                      and (having is None or having in r.matches))


def interval(network: str):
    addresses = ip_network(network)
    return (int(addresses[0]), int(addresses[-1]))


SMTP = rule_of("publish", "exchange", "smtp")           # its DNAT and its forward accept
PARTNER = rule_of("publish", "partner", "smtp-alt")     # DNAT to port 25, forward accept
HAIRPIN = rule_of("hairpin", "partner", "smtp-alt")     # DNAT from inside, SNAT towards it
REDIRECT = rule_of("publish", "local", "smtp-alt")      # redirect, input accept
SOURCES = kind("address", field="saddr")
LOCAL = rule_of("publish", "local", "submission")
RELAY = rule_of("outbound", "relay", "smtp")
SSH = rule_of("management", "ssh")
ANTISPOOFING = rule_of("antispoofing", "firewall.anti_spoofing")
RESOLVER_UDP = rule_of("outbound", "resolver", "dns", having=PortMatch("udp", 53, 53))
MLD = rule_of("fixed", "mld", having=AddressMatch("ip6", "saddr", (LINK_LOCAL,)))
MLD_ANY = rule_of("fixed", "mld", having=AddressMatch("ip6", "saddr", ((0, 0),)))   # from ::
SERVER = kind("address", field="daddr", original=False)
EVERY_PORT = {"low": 1, "high": 65535}
RATE_METER = lambda r: SMTP(r) and any(s.kind == "rate_meter" for s in r.statements)
COUNT_METER = lambda r: SMTP(r) and any(s.kind == "count_meter" for s in r.statements)
RATE_FULL = lambda r: SMTP(r) and any(m.kind == "unmetered" and m.set_name.endswith("_new4")
                                      for m in r.matches)
COUNT_FULL = lambda r: SMTP(r) and any(m.kind == "unmetered" and m.set_name.endswith("_conn4")
                                       for m in r.matches)
SNEAKY = Origin("fixed", "sneaky")
SNEAKY_CHAIN = Chain("sneaky", None, (Rule(SNEAKY, (), (ACCEPT,)),))
# Monday and Friday 22:00 to 06:00 the next morning in Tokyo: 13:00-21:00 UTC,
# seconds 46800-75599 of the day; 22:00-24:00 local is 79200-86399


# (what is broken, how: a function on the plan of BASE, what the checker must say)
BREAKAGES = [
    ("forward accept without the server address",
     lambda p: edit_rules(p, "forward", SMTP, without(SERVER)),
     "accept that the policy does not allow"),
    ("forward accept without the original address",
     lambda p: edit_rules(p, "forward", SMTP, without(kind("address", original=True))),
     "does not allow"),
    ("forward accept on every port",
     lambda p: edit_rules(p, "forward", SMTP, changed(kind("port", original=False), **EVERY_PORT)),
     "does not allow"),
    ("DNAT without the external address",
     lambda p: edit_rules(p, "prerouting", SMTP, without(kind("address"))),
     "DNAT not bound to one external address"),
    ("DNAT without the external interface",
     lambda p: edit_rules(p, "prerouting", SMTP, without(kind("interface"))),
     "DNAT without the external interface"),
    ("DNAT to a server nobody published",
     lambda p: edit_rules(p, "prerouting", SMTP, to_unpublished_server()),
     "DNAT that no publish rule asks for"),
    ("forward policy accept",
     lambda p: edit_chain(p, "forward",
                          lambda c: replace(c, hook=replace(c.hook, policy="accept"))),
     "chain forward: policy accept"),
    ("input reject without its reject rules",
     lambda p: edit_rules(p, "input", rule_of("policy", "input"), lambda r: None),
     "does not end with the tcp reset"),
    ("input accepts a port alone",
     lambda p: add_rule(p, "input", LOCAL, Rule(SNEAKY, (PortMatch("tcp", 25, 25),), (ACCEPT,))),
     "accepts by port alone"),
    ("outbound accept without its sources",
     lambda p: edit_rules(p, "forward", RELAY, without(kind("address"))), "does not allow"),
    ("outbound accept without its schedule",
     lambda p: edit_rules(p, "forward", RELAY, without(lambda m: m.kind in ("day", "hour"))),
     "does not allow"),
    ("outbound schedule on a day too many",
     lambda p: edit_rules(p, "forward", RELAY, changed(kind("day"), days=(1, 5, 6))),
     "does not allow"),
    ("outbound schedule a second too early",
     lambda p: edit_rules(p, "forward", RELAY, changed(kind("hour"), first=46799)),
     "does not allow"),
    ("outbound schedule in local time, not UTC",
     lambda p: edit_rules(p, "forward", RELAY, changed(kind("hour"), first=79200, last=86399)),
     "does not allow"),
    ("outbound source set widened", lambda p: widen_set(p, "relays_v4", "10.1.0.0/24"),
     "does not allow"),
    ("ssh from anywhere", lambda p: edit_rules(p, "input", SSH, without(kind("address"))),
     "accepts by port alone"),
    ("ssh from a wider network",
     lambda p: edit_rules(p, "input", SSH, changed(
         kind("address"), set_name=None, intervals=(interval("192.0.2.0/24"),))),
     "does not allow"),
    ("localhost outbound on every port",
     lambda p: edit_rules(p, "output", RESOLVER_UDP, changed(kind("port"), **EVERY_PORT)),
     "does not allow"),
    ("MLD from any source", lambda p: edit_rules(p, "input", MLD, without(kind("address"))),
     "does not allow"),
    ("MLD from a routed source",
     lambda p: edit_rules(p, "input", MLD, changed(
         kind("address"), intervals=(interval("2001:db8::/32"),))),
     "does not allow"),
    ("MLD queries from ::",
     lambda p: edit_rules(p, "input", MLD_ANY, parts("matches", kind("icmp"), lambda m: replace(
         m, types=("mld-listener-query",) + m.types))),
     "does not allow"),
    ("MLD without its hop limit", lambda p: edit_rules(p, "input", MLD, without(kind("hoplimit"))),
     "does not allow"),
    ("ICMP echo accepted",
     lambda p: add_rule(p, "input", LOCAL,
                        Rule(SNEAKY, (IcmpTypeMatch("icmp", ("echo-request",)),), (ACCEPT,))),
     "does not allow"),
    ("limited accept without its rate meter",
     lambda p: edit_rules(p, "forward", RATE_METER, lambda r: None),
     "accept of a limited publication without its limits"),
    ("limited accept without its concurrent meter",
     lambda p: edit_rules(p, "forward", COUNT_METER, lambda r: None),
     "accept of a limited publication without its limits"),
    ("rate meter looser than the limit",
     lambda p: edit_rules(p, "forward", RATE_METER, lambda r: replace(
         r, statements=(replace(r.statements[0], count=30),) + r.statements[1:])),
     "accept of a limited publication without its limits"),
    ("a full rate meter lets new sources through",
     lambda p: edit_rules(p, "forward", RATE_FULL, lambda r: None),
     "accept of a limited publication without its limits"),
    ("a full concurrent meter lets new sources through",
     lambda p: edit_rules(p, "forward", COUNT_FULL, lambda r: None),
     "accept of a limited publication without its limits"),
    ("rate meter on each address of the limit's /24",
     lambda p: edit_rules(edit_rules(p, "forward", RATE_METER, parts(
         "statements", kind("rate_meter"), lambda s: replace(s, prefix=32))),
         "forward", RATE_FULL, changed(kind("unmetered"), prefix=32)),
     "accept of a limited publication without its limits"),
    ("meter on other matches than the accept",
     lambda p: edit_rules(p, "forward", RATE_METER, without(kind("address", original=True))),
     "accept of a limited publication without its limits"),
    ("a meter that accepts",
     lambda p: edit_rules(p, "forward", COUNT_METER, lambda r: replace(
         r, statements=r.statements[:-1] + (ACCEPT,))),
     "a meter in a rule that does not drop or reject"),
    ("a jump to a chain of its own",
     lambda p: add_rule(add_chain(p, SNEAKY_CHAIN, before="output"), "forward", SMTP,
                        Rule(SNEAKY, (), (Jump("sneaky"),))),
     "unexpected statement ['jump']"),
    ("an accept on ct status",
     lambda p: add_rule(p, "forward", SMTP,
                        Rule(SNEAKY, (ConntrackStatusMatch("dnat"),), (ACCEPT,))),
     "accepts on ct status"),
    ("forward accept beyond allow_from",
     lambda p: edit_rules(p, "forward", PARTNER, without(SOURCES)), "does not allow"),
    ("DNAT beyond allow_from",
     lambda p: edit_rules(p, "prerouting", PARTNER, without(SOURCES)),
     "DNAT that no publish rule asks for"),
    ("DNAT to another server port",
     lambda p: edit_rules(p, "prerouting", PARTNER, parts(
         "statements", kind("nat"), lambda s: replace(s, port=22))),
     "DNAT that no publish rule asks for"),
    ("forward accept of the server port reached directly",
     lambda p: edit_rules(p, "forward", PARTNER, without(kind("port", original=True))),
     "does not allow"),
    ("hairpin DNAT from every source",
     lambda p: edit_rules(p, "prerouting", HAIRPIN, without(SOURCES)),
     "DNAT that no publish rule asks for"),
    ("hairpin SNAT of connections that were not DNATed",
     lambda p: edit_rules(p, "postrouting", HAIRPIN, without(kind("ctstatus"))),
     "beyond hairpin connections"),
    ("masquerade of everything to the server",
     lambda p: edit_rules(p, "postrouting", HAIRPIN, lambda r: replace(
         r, matches=r.matches[:2] + r.matches[4:], statements=(Masquerade(),))),
     "beyond hairpin connections"),
    ("hairpin SNAT of connections from outside with a forged internal source",
     lambda p: edit_rules(p, "postrouting", HAIRPIN, without(kind("interface", direction="iif"))),
     "hairpin SNAT of connections that may have come from outside"),
    ("no anti-spoofing",
     lambda p: replace(p, chains=tuple(c for c in p.chains if c.name != "antispoofing")),
     "anti-spoofing leaves ip sources of the internal networks"),
    ("anti-spoofing after connection tracking",
     lambda p: edit_chain(p, "antispoofing", lambda c: replace(
         c, hook=replace(c.hook, priority="dstnat"))),
     "not a filter chain on hook prerouting before connection tracking"),
    ("anti-spoofing of part of the internal networks",
     lambda p: edit_rules(p, "antispoofing", ANTISPOOFING, changed(
         SOURCES, intervals=(interval("10.1.0.0/25"),))),
     "anti-spoofing leaves ip sources of the internal networks"),
    ("anti-spoofing that accepts",
     lambda p: edit_rules(p, "antispoofing", ANTISPOOFING, lambda r: replace(
         r, statements=(ACCEPT,))),
     "anti-spoofing does more than drop"),
    ("redirect accept without the original port",
     lambda p: edit_rules(p, "input", REDIRECT, without(kind("port", original=True))),
     "does not allow"),
    ("redirect beyond allow_from",
     lambda p: edit_rules(p, "prerouting", REDIRECT, without(SOURCES)),
     "redirect that no publish rule asks for"),
    ("redirect to the SSH port",
     lambda p: edit_rules(p, "prerouting", REDIRECT, parts(
         "statements", kind("redirect"), lambda s: replace(s, port=22))),
     "redirect that no publish rule asks for"),
    ("a chain docs/ruleset.md does not list",
     lambda p: add_chain(p, SNEAKY_CHAIN, before="output"),
     "chain sneaky: not one of the chains"),
]


# BASE with a block (which holds the admins: blocked for SSH too) and a run-time set
BLOCKED_BASE = BASE.replace("  management:\n", "  block: [spammers, 192.0.2.0/28]\n"
                            "  dynamic_block: banned\n  management:\n").replace(
    "address_sets:\n", "address_sets:\n  spammers: [203.0.113.0/24, \"2001:db8:bad::/48\"]\n")
BLOCK = rule_of("block", "firewall.block")
DYNAMIC = rule_of("block", "firewall.dynamic_block")
BLOCK_BREAKAGES = [
    ("input without the block", lambda p: edit_rules(p, "input", BLOCK, lambda r: None)),
    ("forward without the run-time block",
     lambda p: edit_rules(p, "forward", DYNAMIC, lambda r: None)),
    ("block after the SSH accept", lambda p: move_after(p, "input", BLOCK, SSH)),
    ("block after ICMP errors",
     lambda p: move_after(p, "input", BLOCK, rule_of("fixed", "icmpv6 errors"))),
    ("forward block after the accepts",
     lambda p: move_after(p, "forward", BLOCK, lambda r: r.statements[-1:] == (ACCEPT,))),
    ("block set narrowed", lambda p: widen_set(p, "_block_v4", "203.0.113.0/25")),
]


def move_after(ruleset: Ruleset, chain: str, picks, after) -> Ruleset:
    """The rules `picks` chooses moved after the last rule `after` chooses."""
    def move(c: Chain) -> Chain:
        moved = tuple(r for r in c.rules if picks(r))
        rest = tuple(r for r in c.rules if not picks(r))
        assert moved, f"no such rule in {chain}: update the breakage"
        at = max(i for i, r in enumerate(rest) if after(r)) + 1
        return replace(c, rules=rest[:at] + moved + rest[at:])
    return edit_chain(ruleset, chain, move)


def _compile(text: str):
    with policy_file(text) as path:
        return compile_path(path).or_raise()


@pytest.mark.parametrize("path", POLICIES, ids=[str(p.relative_to(ROOT)) for p in POLICIES])
def test_golden_and_example_rulesets_fail_closed(path):
    compiled = compile_path(str(path)).or_raise()
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


def test_the_unbroken_base_passes():
    compiled = _compile(BASE)
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


@pytest.mark.parametrize("what,breaks,expected", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_checker_reports_a_broken_ruleset(what, breaks, expected):
    """The broken plan, printed by both generators, loaded and listed by nft."""
    assert_reported(_compile(BASE), breaks, expected)


def assert_reported(compiled, breaks, expected: str) -> None:
    """`breaks` applied to the plan; each generator's output, loaded and listed
    by nft, gets a problem naming `expected`."""
    broken = breaks(compiled.ruleset)
    for listing in (failclosed.load(text.generate(broken)),
                    failclosed.load(json.dumps(nft_json.generate(broken)), json=True)):
        problems = failclosed.check(listing, compiled.policy)
        assert any(expected in p for p in problems), problems


def test_the_unbroken_blocked_base_passes():
    compiled = _compile(BLOCKED_BASE)
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


@pytest.mark.parametrize("what,breaks", BLOCK_BREAKAGES, ids=[b[0] for b in BLOCK_BREAKAGES])
def test_checker_reports_a_broken_block(what, breaks):
    compiled = _compile(BLOCKED_BASE)
    broken = breaks(compiled.ruleset)
    for listing in (failclosed.load(text.generate(broken)),
                    failclosed.load(json.dumps(nft_json.generate(broken)), json=True)):
        problems = failclosed.check(listing, compiled.policy)
        assert any("accept before blocked sources are dropped" in p for p in problems), problems


# -- routed publications, ping and ssh_port ------------------------------------------

ROUTED_BASE = """\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10, "2001:db8:100::10"]}
  internal: {interface: eth1, networks: [10.1.0.0/24, "2001:db8:5::/48"],
             routed: ["2001:db8:5::/48"]}
  management: {ssh: [admins], ssh_port: 2222, ping: [admins]}
address_sets:
  admins: [192.0.2.0/28]
publish:
  - {name: mx6, server: "2001:db8:5::25", services: [smtp, ping]}
  - {name: mx4, server: 10.1.0.25, external_address: 198.51.100.10, services: [ping]}
"""
ROUTED_SMTP = rule_of("publish", "mx6", "smtp")
MX4_PING = rule_of("publish", "mx4", "ping")
PING = rule_of("management", "ping")
ROUTED_BREAKAGES = [
    ("routed accept without the server address",
     lambda p: edit_rules(p, "forward", ROUTED_SMTP, without(SERVER)), "does not allow"),
    ("routed accept from the inside",
     lambda p: edit_rules(p, "forward", ROUTED_SMTP, without(kind("interface", direction="iif"))),
     "does not allow"),
    ("routed accept on every port",
     lambda p: edit_rules(p, "forward", ROUTED_SMTP, changed(kind("port"), **EVERY_PORT)),
     "does not allow"),
    ("ssh on 22, not ssh_port",
     lambda p: edit_rules(p, "input", SSH, changed(kind("port"), low=22, high=22)),
     "does not allow"),
    ("ping the firewall from anywhere",
     lambda p: edit_rules(p, "input", PING, without(kind("address"))), "does not allow"),
    ("DNATed ping accepted without the original address",
     lambda p: edit_rules(p, "forward", MX4_PING, without(kind("address", original=True))),
     "does not allow"),
    ("ping DNATed to a server nobody published",
     lambda p: edit_rules(p, "prerouting", MX4_PING, to_unpublished_server()),
     "DNAT that no publish rule asks for"),
]


def test_the_unbroken_routed_base_passes():
    compiled = _compile(ROUTED_BASE)
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


@pytest.mark.parametrize("what,breaks,expected", ROUTED_BREAKAGES,
                         ids=[b[0] for b in ROUTED_BREAKAGES])
def test_checker_reports_a_broken_routed_or_ping_ruleset(what, breaks, expected):
    compiled = _compile(ROUTED_BASE)
    listing = failclosed.load(text.generate(breaks(compiled.ruleset)))
    problems = failclosed.check(listing, compiled.policy)
    assert any(expected in p for p in problems), problems


# -- dispatch: many publications looked up in a verdict map -----------------------------

DISPATCH_BASE = (ROOT / "golden" / "publish-dispatch" / "policy.yaml").read_text()
MAIL_C = rule_of("publish", "mail-c", "smtp")
MAIL_A_RATE = lambda r: rule_of("publish", "mail-a", "submission")(r) and any(
    s.kind == "rate_meter" for s in r.statements)

NAT_MAP_V4 = lambda r: r.origin == Origin("dispatch", "prerouting") and any(
    s.kind == "nat_map" and s.family == "ip" for s in r.statements)


def retarget(ruleset: Ruleset, chain: str, target: str, to: str) -> Ruleset:
    """The dispatch of `chain` with the element that jumps to `target` jumping to `to`."""
    return edit_rules(ruleset, chain, rule_of("dispatch", chain), parts(
        "statements", kind("dispatch"), lambda s: replace(s, entries=tuple(
            replace(e, target=to) if e.target == target else e for e in s.entries))))


DISPATCH_BREAKAGES = [
    ("dispatched forward accept beyond allow_from",
     lambda p: edit_rules(p, "forward_3", MAIL_C, without(SOURCES)), "does not allow"),
    ("dispatched limited accept without its rate meter",
     lambda p: edit_rules(p, "forward_1", MAIL_A_RATE, lambda r: None),
     "accept of a limited publication without its limits"),
    ("dispatched DNAT to a server nobody published",
     lambda p: edit_rules(p, "prerouting_2", MAIL_C, to_unpublished_server()),
     "DNAT that no publish rule asks for"),
    ("a DNAT map element to a server nobody published",
     lambda p: edit_rules(p, "prerouting", NAT_MAP_V4, parts(
         "statements", kind("nat_map"), lambda s: replace(s, entries=tuple(
             replace(e, server=ip_address("10.1.0.99")) if e.port == 587 else e
             for e in s.entries)))),
     "DNAT that no publish rule asks for"),
    ("a DNAT map from any interface",
     lambda p: edit_rules(p, "prerouting", NAT_MAP_V4, without(kind("interface"))),
     "DNAT without the external interface"),
    ("a map element to a chain that accepts its key alone",
     lambda p: retarget(add_chain(p, SNEAKY_CHAIN, before="forward"), "forward", "forward_3",
                        "sneaky"),
     "accept that the policy does not allow"),
    ("a chain no map reaches",
     lambda p: add_chain(p, SNEAKY_CHAIN, before="output"), "chain sneaky: not one of the chains"),
    # the rules of an address's chain leave its address to the map: another
    # address's element must not lead there
    ("a map element to another address's chain",
     lambda p: retarget(p, "forward", "forward_2", "forward_3"),
     "accept that the policy does not allow"),
]


def test_the_unbroken_dispatch_base_passes():
    compiled = _compile(DISPATCH_BASE)
    assert any(rule.origin.kind == "dispatch" for c in compiled.ruleset.chains for rule in c.rules)
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


@pytest.mark.parametrize("what,breaks,expected", DISPATCH_BREAKAGES,
                         ids=[b[0] for b in DISPATCH_BREAKAGES])
def test_checker_reports_a_broken_dispatch(what, breaks, expected):
    """Both generators: the map's JSON and text forms list alike, but both are read."""
    assert_reported(_compile(DISPATCH_BASE), breaks, expected)


# -- zones: a LAN and a DMZ (golden/zones), and a publication whose hairpin
# admits the DMZ only --------------------------------------------------------------

ZONES_BASE = (ROOT / "golden" / "zones" / "policy.yaml").read_text().replace(
    "\noutbound:\n", """  - {name: web, server: 10.2.0.80, external_address: 198.51.100.10,
     services: [https], hairpin: [dmz]}

outbound:
""")
ZONE_SPOOFING = rule_of("antispoofing", "firewall.anti_spoofing",
                        having=InterfaceMatch("iif", "eth1"))
WEB_HAIRPIN = rule_of("hairpin", "web", "https")
LAN_TO_MAIL = rule_of("outbound", "lan-to-mail", "imaps")
LAN = AddressMatch("ip", "saddr", (interval("10.1.0.0/24"),))
LAN_SNAT = Rule(Origin("hairpin", "mx", "smtp"),
                (InterfaceMatch("iif", "eth1"), InterfaceMatch("oif", "eth2"),
                 ConntrackStatusMatch("dnat"), LAN,
                 AddressMatch("ip", "daddr", (interval("10.2.0.25/32"),)),
                 PortMatch("tcp", 25, 25)), (Masquerade(),))
ZONE_BREAKAGES = [
    ("a zone's anti-spoofing left out",
     lambda p: edit_rules(p, "antispoofing", ZONE_SPOOFING, lambda r: None),
     "anti-spoofing leaves ip sources outside zone lan arriving on eth1 undropped"),
    ("hairpin SNAT of a client in another zone",
     lambda p: add_rule(p, "postrouting", lambda r: True, LAN_SNAT),
     "hairpin SNAT of connections that may have come from outside or from another zone"),
    ("hairpin DNAT from a zone the publication's hairpin does not admit",
     lambda p: edit_rules(p, "prerouting", WEB_HAIRPIN, parts(
         "matches", lambda m: m.kind == "interface" or getattr(m, "field", None) == "saddr",
         lambda m: InterfaceMatch("iif", "eth1") if m.kind == "interface" else LAN)),
     "DNAT that no publish rule asks for"),
    ("zone-to-zone accept to any destination",
     lambda p: edit_rules(p, "forward", LAN_TO_MAIL, without(kind("address", field="daddr"))),
     "accept that the policy does not allow"),
]


def test_the_unbroken_zones_base_passes():
    compiled = _compile(ZONES_BASE)
    assert any(WEB_HAIRPIN(r) for c in compiled.ruleset.chains for r in c.rules)
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


@pytest.mark.parametrize("what,breaks,expected", ZONE_BREAKAGES,
                         ids=[b[0] for b in ZONE_BREAKAGES])
def test_checker_reports_a_broken_zones_ruleset(what, breaks, expected):
    assert_reported(_compile(ZONES_BASE), breaks, expected)
