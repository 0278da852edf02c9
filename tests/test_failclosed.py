"""Fail-closed: the ruleset a kernel loads allows only what the policy allows.

Each compiled ruleset is loaded into a fresh network namespace and judged on
nft's JSON listing by tests/failclosed.py, against the compiler's model of
the policy: every golden ruleset, the examples, and random valid policies.
The checker is itself tested on hand-broken rulesets, one per way a ruleset
can fail open, so that a silent checker cannot pass for a clean ruleset.
Needs root and iproute2 (network namespaces); skips otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import failclosed
from mailpubc.api import compile_path
from e2e.netns import prerequisites
from strategies import policies, policy_file

ROOT = Path(__file__).resolve().parent.parent
POLICIES = (sorted(p for p in (ROOT / "golden").glob("*/policy.yaml")
                   if (p.parent / "expected.nft").exists())
            + sorted((ROOT / "examples").glob("*.yaml")))
FUZZ_EXAMPLES = settings().max_examples   # every draw, as many as the other properties

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
  policy: {input: reject, forward: drop, output: drop}
  management:
    ssh: [admins]
address_sets:
  admins: [192.0.2.0/28]
  relays: [10.1.0.25]
schedules:
  office: {days: [mon, fri], hours: "22:00-06:00"}
publish:
  - {name: exchange, server: 10.1.0.25, external_address: 198.51.100.10, services: [smtp, imaps]}
  - {name: local, server: localhost, external_address: 198.51.100.11, services: [submission]}
outbound:
  - {name: relay, from: relays, services: [smtp], schedule: office}
  - {name: resolver, from: localhost, services: [dns]}
"""
FWD_SMTP = ('oifname "eth1" ip daddr 10.1.0.25 tcp dport 25 ct original ip daddr 198.51.100.10 '
            'ct original proto-dst 25 accept comment "mailpub publish exchange smtp"')
DNAT_SMTP = 'iifname "eth0" ip daddr 198.51.100.10 tcp dport 25 dnat ip to 10.1.0.25'
RELAY = 'iifname "eth1" oifname "eth0" ip saddr @relays_v4 tcp dport 25'
# Monday and Friday 22:00 to 06:00 the next morning in Tokyo: 13:00-21:00 UTC
SCHEDULE = 'meta day { "Monday", "Friday" } meta hour 46800-75599 '
FORWARD_HOOK = "type filter hook forward priority filter; policy "
SSH = "ip saddr @admins_v4 tcp dport 22 accept"
INPUT_LOCAL = ('ip daddr 198.51.100.11 tcp dport 587 accept '
               'comment "mailpub publish local submission"')
MLD = ("icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, "
       "mld2-listener-report } ip6 saddr fe80::/10 ip6 hoplimit 1 accept")
MLD_ANY = "icmpv6 type { mld-listener-report, mld2-listener-report } ip6 saddr :: ip6 hoplimit 1"
REJECTS = ('\t\tmeta l4proto tcp reject with tcp reset comment "mailpub policy input reject"\n'
           '\t\treject with icmpx type admin-prohibited comment "mailpub policy input reject"\n')

# (what is broken, [(text, its replacement), ...], what the checker must say)
BREAKAGES = [
    ("forward accept without the server address",
     [(FWD_SMTP, FWD_SMTP.replace("ip daddr 10.1.0.25 ", ""))],
     "accept that the policy does not allow"),
    ("forward accept without the original address",
     [(FWD_SMTP, FWD_SMTP.replace("ct original ip daddr 198.51.100.10 ", ""))], "does not allow"),
    ("forward accept on every port",
     [(FWD_SMTP, FWD_SMTP.replace("tcp dport 25 ", "tcp dport 1-65535 "))], "does not allow"),
    ("DNAT without the external address",
     [(DNAT_SMTP, DNAT_SMTP.replace("ip daddr 198.51.100.10 ", ""))],
     "DNAT not bound to one external address"),
    ("DNAT without the external interface",
     [(DNAT_SMTP, DNAT_SMTP.replace('iifname "eth0" ', ""))],
     "DNAT without the external interface"),
    ("DNAT to a server nobody published",
     [(DNAT_SMTP, DNAT_SMTP.replace("to 10.1.0.25", "to 10.1.0.99"))],
     "DNAT that no publish rule asks for"),
    ("forward policy accept",
     [(FORWARD_HOOK + "drop;", FORWARD_HOOK + "accept;")],
     "chain forward: policy accept"),
    ("input reject without its reject rules", [(REJECTS, "")], "does not end with the tcp reset"),
    ("input accepts a port alone", [(INPUT_LOCAL, INPUT_LOCAL + "\n\t\ttcp dport 25 accept")],
     "accepts by port alone"),
    ("forward accepts everything DNATed", [(FWD_SMTP, FWD_SMTP + "\n\t\tct status dnat accept")],
     "accepts on ct status"),
    ("outbound accept without its sources", [(RELAY, RELAY.replace("ip saddr @relays_v4 ", ""))],
     "does not allow"),
    ("outbound accept without its schedule", [(SCHEDULE, "")], "does not allow"),
    ("outbound schedule on a day too many",
     [(SCHEDULE, SCHEDULE.replace('"Friday" }', '"Friday", "Saturday" }'))], "does not allow"),
    ("outbound schedule a second too early",
     [(SCHEDULE, SCHEDULE.replace("46800-", "46799-"))], "does not allow"),
    ("outbound schedule in local time, not UTC",
     [(SCHEDULE, SCHEDULE.replace("46800-75599", "79200-86399"))], "does not allow"),
    ("outbound source set widened",
     [("elements = {\n\t\t\t10.1.0.25,", "elements = {\n\t\t\t10.1.0.0/24,")], "does not allow"),
    ("ssh from anywhere", [(SSH, "tcp dport 22 accept")], "accepts by port alone"),
    ("ssh from a wider network", [(SSH, SSH.replace("@admins_v4", "192.0.2.0/24"))],
     "does not allow"),
    ("localhost outbound on every port",
     [("udp dport 53 accept", "udp dport 1-65535 accept")], "does not allow"),
    ("MLD from any source", [(MLD, MLD.replace("ip6 saddr fe80::/10 ", ""))], "does not allow"),
    ("MLD from a routed source", [(MLD, MLD.replace("fe80::/10", "2001:db8::/32"))],
     "does not allow"),
    ("MLD queries from ::", [(MLD_ANY, MLD_ANY.replace("{ ", "{ mld-listener-query, "))],
     "does not allow"),
    ("MLD without its hop limit", [(MLD, MLD.replace("ip6 hoplimit 1 ", ""))], "does not allow"),
    ("ICMP echo accepted", [(INPUT_LOCAL, INPUT_LOCAL + "\n\t\ticmp type echo-request accept")],
     "does not allow"),
    ("a jump to a chain of its own",
     [(FWD_SMTP, FWD_SMTP + "\n\t\tjump sneaky"),
      ("\tchain output {", "\tchain sneaky {\n\t\taccept\n\t}\n\n\tchain output {")],
     "unexpected statement ['jump']"),
    ("a chain docs/ruleset.md does not list",
     [("\tchain output {", "\tchain sneaky {\n\t\taccept\n\t}\n\n\tchain output {")],
     "chain sneaky: not one of the chains"),
]


@pytest.fixture(scope="module", autouse=True)
def namespaces_work():
    reason = prerequisites([])
    if reason:
        pytest.skip(reason)


def _compile(text: str):
    with policy_file(text) as path:
        return compile_path(path).or_raise()


@pytest.mark.parametrize("path", POLICIES, ids=[str(p.relative_to(ROOT)) for p in POLICIES])
def test_golden_and_example_rulesets_fail_closed(path):
    compiled = compile_path(str(path)).or_raise()
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow,
                                                             HealthCheck.data_too_large])
@given(policies())
def test_random_valid_policy_fails_closed(draw):
    compiled = _compile(draw.text)
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


def test_the_unbroken_base_passes():
    compiled = _compile(BASE)
    assert failclosed.check(failclosed.load(compiled.text), compiled.policy) == []


@pytest.mark.parametrize("what,edits,expected", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_checker_reports_a_broken_ruleset(what, edits, expected):
    compiled = _compile(BASE)
    broken = compiled.text
    for old, new in edits:
        assert old in broken, f"the base ruleset changed; update the breakage {what!r}"
        broken = broken.replace(old, new, 1)
    problems = failclosed.check(failclosed.load(broken), compiled.policy)
    assert any(expected in p for p in problems), problems
