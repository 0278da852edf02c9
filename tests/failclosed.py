"""Fail-closed checker: does the ruleset the kernel holds allow only what the
policy allows?

`load(text)` loads a compiled ruleset into a fresh network namespace and
reads it back as nft's JSON listing (both through mailpubc.nft), so the checks judge
nft's own view of the rules, never the compiler's text. `check(listing,
policy)` compares that view with the compiler's model of the policy
(`compile_path(...).policy`, the statement of what the policy allows) and
returns every problem found; an empty list means fail-closed:

- input and forward drop unless the policy says accept (reject: drop plus
  the two final reject rules), output likewise;
- every accept in input/forward/output is either one of the fixed rules of
  docs/ruleset.md (conntrack established/related, loopback, neighbour
  discovery with hop limit 255, MLD from link-local sources (reports also
  from ::) with hop limit 1, ICMP errors) or is inside one thing the
  policy allows: a published service (its address and port; the forward
  accept also its original address and port), an outbound rule (its sources
  or destinations, ports and schedule), management ssh (a source, the
  ssh_port), management ping (a source or any, echo request); a routed
  server's publication (external interface to its zone's, its own address
  and port, no DNAT); `ping` is an ICMP or ICMPv6 echo-request match in
  place of a port; a publication's accepts also keep inside the allow_from
  of their service (its own, or the publication's), and one
  with a server_port accepts the server's port only with the published one
  as the original (`ct original proto-dst`);
- an accept of a publication with a `limit` comes after rules with the
  same matches that turn away (drop or reject) new connections from a
  source over a per-source meter no looser than the limit: `update @S {
  saddr limit rate over N/unit burst B packets }`, `add @S { saddr ct
  count over C }`, keyed on the source's network (`ip6 saddr & MASK`) no
  longer than the limit's prefix, each followed by a rule that turns away
  a source the meter does not hold (`ip6 saddr & MASK != @S`: it was
  full); meters appear in no other rule;
- nothing accepts by port alone (but the firewall's own outbound to
  anywhere, in output) or on `ct status`; no jumps but those of a base
  chain's verdict map (the dispatch of many publications): each element's
  chain is judged as if its rules stood in the map's place with the
  element's key as matches, and a chain no map reaches is a problem; a
  DNAT map (`dnat ip to ip daddr . meta l4proto . th dport map {...}`) is
  judged as one DNAT rule an element, its key as matches;
- every DNAT matches the external interface (or, for a hairpin publication,
  the interface of a zone its hairpin admits and sources in that zone's
  networks), one external
  address of the firewall, a port and sources inside allow_from, and
  translates to the server and server port that publish them; a redirect
  likewise for a localhost publication with a server_port;
- source translation towards the inside (masquerade, or SNAT to the
  zone's address) only of DNATed connections that arrived on the interface
  of the server's own zone from that zone's networks, leaving by the same
  interface, to the server of a publication whose hairpin admits the zone;
- an outbound rule's accepts come from each zone's interface with that
  zone's sources only, and `to` omitted reaches the external interface only;
- with firewall.anti_spoofing (the default), a filter chain on hook
  prerouting before connection tracking (priority below -200) drops what
  arrives on the external interface from the internal networks (but for
  link-local and unspecified sources) and, on each zone's interface, every
  source but that zone's networks and those no one owns; that chain does
  nothing else;
- in input and forward, no accept but replies, loopback, neighbour
  discovery and MLD comes before blocked sources are dropped or rejected:
  rules on the source alone that cover all of `firewall.block` and look up
  both run-time sets of `firewall.dynamic_block` (flags timeout).
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timezone
from typing import Optional

from mailpubc import nft
from mailpubc.addresses import merge
from mailpubc.model import Limit, Policy, Schedule
from mailpubc.plan import DEFAULT_BURST, LINK_LOCAL, UNIT_SECONDS
from mailpubc.schedule import schedule_zone
from mailpubc.vocab import (ECHO, ECHO_PROTOCOL, ECHO_REQUEST, ICMP_PROTOCOLS, PortRange,
                            ICMP_ERRORS, ICMPV6_ERRORS, MLD, MLD_REPORTS, NEIGHBOUR_DISCOVERY,
                            NFT_DAY_NAMES)

FILTER_CHAINS = ("input", "forward", "output")
BASE_CHAINS = {"prerouting": "nat", "input": "filter", "forward": "filter",
               "output": "filter", "postrouting": "nat"}
# anti-spoofing's chain, where the policy has it, and the priority it must
# come before: connection tracking's, so a forged packet opens no connection
ANTISPOOFING = "antispoofing"
CONNTRACK_PRIORITY = -200
LISTED_CHAINS = {*BASE_CHAINS, ANTISPOOFING}
# sources anti-spoofing leaves alone: unspecified (0.0.0.0, ::) and link-local
NO_ONES = {"ip": [(0, 0)], "ip6": [(0, 0), (0xfe80 << 112, (0xfec0 << 112) - 1)]}
VERDICTS = {"accept", "drop", "reject", "dnat", "snat", "masquerade", "redirect"}
INTERFACE_KEYS = {"iifname", "oifname", "iif", "oif"}
LISTED_DAYS = {name: number for number, name in enumerate(NFT_DAY_NAMES)}  # nft lists day names
DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES


def load(text: str, json: bool = False) -> dict:
    """Load the ruleset (libnftables JSON when `json`) in a fresh, unnamed
    network namespace (`nft.scratch`); nft's JSON listing of it.

    mailpubc.nft runs nft in UTC: nft turns `meta hour` into UTC on loading
    and back on listing, and nft 1.0.6 lists hours wrongly west of UTC."""
    def loaded() -> dict:
        nft.load(text, json=json)
        return nft.list_ruleset()
    return nft.scratch(loaded)


# -- nft's JSON, made comparable ---------------------------------------------------

class Rule:
    """One listed rule: its matches as (key, op, value) and its statements."""

    def __init__(self, raw: dict):
        self.chain = raw["chain"]
        self.comment = raw.get("comment", "")
        self.matches: list[tuple[str, str, object]] = []
        self.statements: list[tuple[str, object]] = []
        for expr in raw["expr"]:
            (name, value), = expr.items()
            if name == "match":
                self.matches.append((_key(value["left"]), value["op"], value["right"]))
            else:
                self.statements.append((name, value))
        self.verdict = next((n for n, _ in reversed(self.statements) if n in VERDICTS), None)

    def keys(self) -> set[str]:
        return {key for key, _, _ in self.matches}

    def positive(self, key: str) -> list:
        """The values this rule requires `key` to have (negated matches narrow
        a rule but never pin it down)."""
        return [value for k, op, value in self.matches if k == key and op in ("==", "in")]

    def __str__(self) -> str:
        shown = " ".join(f"{k} {op} {json.dumps(v)}" for k, op, v in self.matches)
        return f"{self.chain}: {shown} {self.verdict} (comment {self.comment!r})"


def _key(left: dict) -> str:
    """`ip saddr`, `tcp dport`, `ct original ip daddr`, `iifname`, ... as nft writes them."""
    if "payload" in left:
        return f"{left['payload']['protocol']} {left['payload']['field']}"
    if "meta" in left:
        return left["meta"]["key"]
    if "ct" in left:
        ct = left["ct"]
        return f"ct {ct['dir']} {ct['key']}" if ct.get("dir") else f"ct {ct['key']}"
    return json.dumps(left, sort_keys=True)


def _items(value) -> list:
    """Elements of a set or list value, or the value itself."""
    if isinstance(value, dict) and "set" in value:
        return [x for item in value["set"] for x in _items(item)]
    if isinstance(value, list):
        return [x for item in value for x in _items(item)]
    if isinstance(value, dict) and "elem" in value:
        return _items(value["elem"]["val"])
    return [value]


def _intervals(value, sets: dict) -> list[tuple[int, int]]:
    """Addresses as (first, last) integers, named sets resolved."""
    found = []
    for item in _items(value):
        if isinstance(item, str) and item.startswith("@"):
            found += _intervals(sets[item[1:]].get("elem", []), sets)
        elif isinstance(item, str):
            found.append((int(ipaddress.ip_address(item)),) * 2)
        elif "prefix" in item:
            network = ipaddress.ip_network(f"{item['prefix']['addr']}/{item['prefix']['len']}")
            found.append((int(network.network_address), int(network.broadcast_address)))
        elif "range" in item:
            first, last = item["range"]
            found.append((int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))))
        else:
            raise ValueError(f"unknown address value: {item}")
    return found


def _ports(value) -> list[tuple[int, int]]:
    found = []
    for item in _items(value):
        if isinstance(item, dict) and "range" in item:
            found.append(tuple(item["range"]))
        else:
            found.append((int(item), int(item)))
    return found


def _within(inner: list[tuple[int, int]], outer) -> bool:
    """Every interval of `inner` inside one merged interval of `outer`."""
    merged = merge(outer)
    return bool(inner) and all(any(a <= lo and hi <= b for a, b in merged) for lo, hi in inner)


# -- what the policy allows ----------------------------------------------------

class Allowance:
    """One thing the policy allows, as the constraints an accept must keep."""

    def __init__(self, chain, ports, family=None, saddr=None, daddr=None,
                 original_daddr=None, iifname=None, oifname=None, schedule=None, offset=0,
                 limit=None, original_ports=None):
        self.limit = limit          # model.Limit: accepts need meters before them
        self.chain, self.ports, self.family = chain, ports, family
        # the published port of each of `ports` when the server listens on another
        self.original_ports = original_ports or ports
        self.saddr, self.daddr, self.original_daddr = saddr, daddr, original_daddr
        self.iifname, self.oifname, self.schedule = iifname, oifname, schedule
        self.offset = offset        # the schedule zone's UTC offset now, in minutes

    def admits(self, rule: Rule, sets: dict) -> bool:
        if rule.chain != self.chain or not self._port_inside(rule):
            return False
        for key, allowed in (("saddr", self.saddr), ("daddr", self.daddr),
                             ("ct original daddr", self.original_daddr)):
            if allowed is None:
                continue
            full = (f"ct original {self.family} daddr" if key.startswith("ct")
                    else f"{self.family} {key}")
            if not any(_within(_intervals(v, sets), allowed) for v in rule.positive(full)):
                return False
        for key, wanted in (("iifname", self.iifname), ("oifname", self.oifname)):
            if wanted is not None and not any(_items(v) == [wanted] for v in rule.positive(key)):
                return False
        return self._in_schedule(rule)

    def _port_inside(self, rule: Rule) -> bool:
        """One tcp/udp dport match inside one allowed port range (and, for a
        published server, the original port inside the same range), or an
        echo request of the allowance's family where it allows ping."""
        if ECHO in self.ports and any(self.family in (None, family)
                                      for family in _echo_families(rule)):
            return True
        dports = [(k.split()[0], v) for k, op, v in rule.matches
                  if k in ("tcp dport", "udp dport") and op == "=="]
        for protocol, value in dports:
            for port, published in zip(self.ports, self.original_ports):
                span = [(port.low, port.high)]
                inside = port.protocol == protocol and _within(_ports(value), span)
                if inside and self.original_daddr is not None:
                    inside = any(_within(_ports(v), [(published.low, published.high)])
                                 for v in rule.positive("ct original proto-dst"))
                if inside:
                    return True
        return False

    def _in_schedule(self, rule: Rule) -> bool:
        """Every minute of the UTC week in which the rule's `meta day` and
        `meta hour` admit a packet (at its first or last second) is inside the
        schedule, read minute by minute in local time."""
        if self.schedule is None:
            return True
        times = _time_matches(rule)
        return all(_local_minute_allowed(self.schedule, (minute + self.offset) % WEEK_MINUTES)
                   for minute in range(WEEK_MINUTES)
                   if _time_admits(times, minute * 60) or _time_admits(times, minute * 60 + 59))


def _echo_families(rule: Rule) -> list[str]:
    """The families whose echo request (and nothing else) the rule matches as its type."""
    return [family for family, protocol in ICMP_PROTOCOLS.items()
            for key, op, value in rule.matches
            if key == f"{protocol} type" and op == "==" and _items(value) == [ECHO_REQUEST]]


def _time_matches(rule: Rule) -> list[tuple]:
    """The rule's `meta day` and `meta hour` matches, read once: (positive,
    days, None) or (positive, None, (first, last)) in seconds of the day."""
    found = []
    for key, op, value in rule.matches:
        positive = op in ("==", "in")
        if key == "day":
            found.append((positive, {LISTED_DAYS[name] for name in _items(value)}, None))
        elif key == "hour":
            bounds = value["range"] if isinstance(value, dict) else [value, value]
            found.append((positive, None, tuple(_listed_seconds(text) for text in bounds)))
    return found


def _time_admits(times: list[tuple], second: int) -> bool:
    """Whether time matches (`_time_matches`) admit `second` of the UTC week
    (Sunday 00:00 = 0)."""
    day, time = divmod(second, DAY_MINUTES * 60)
    for positive, days, hours in times:
        inside = day in days if days is not None else hours[0] <= time <= hours[1]
        if inside != positive:
            return False
    return True


def _listed_seconds(text: str) -> int:
    """nft's listed hour, "HH:MM" or "HH:MM:SS" (in UTC: the listing runs with TZ=UTC)."""
    parts = [int(part) for part in text.split(":")] + [0]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def _local_minute_allowed(schedule: Schedule, minute: int) -> bool:
    """The policy language's own reading of a schedule, for one minute of the
    local week (Sunday 00:00 = 0): a window that crosses midnight belongs to
    the day it starts on."""
    day, time = divmod(minute, DAY_MINUTES)
    days = schedule.days or range(7)
    if schedule.hours is None:
        return day in days
    start, end = schedule.hours
    if start < end:
        return day in days and start <= time < end
    return (day in days and time >= start) or ((day - 1) % 7 in days and time < end)


def _offset_minutes(name: Optional[str]) -> int:
    zone, _ = schedule_zone(name)
    return int(datetime.now(timezone.utc).astimezone(zone).utcoffset().total_seconds()) // 60


def allowances(policy: Policy) -> list[Allowance]:
    """Everything the policy lets through a filter chain, from the compiler's model."""
    fw = policy.firewall
    offset = _offset_minutes(fw.timezone)
    found = []
    for rule in policy.publish:
        for service in rule.services:
            found += _publication_allowances(fw, rule, service)
    for rule in policy.outbound:
        ports = tuple(p for s in rule.services for p in s.ports)
        to = rule.destinations
        for family in ("ip", "ip6"):
            daddr = None if to.any else to.addresses.family(family)
            for zone in fw.zones:
                # from each zone's interface, its own sources only; `to` omitted
                # (any) is the outside only
                sources = zone.networks.intersection(rule.sources.addresses).family(family)
                if sources and daddr != ():
                    found.append(Allowance("forward", ports, family, saddr=sources, daddr=daddr,
                                           iifname=zone.interface,
                                           oifname=fw.external_interface if to.any else None,
                                           schedule=rule.schedule, offset=offset))
            if rule.sources.localhost and not to.any and daddr:
                found.append(Allowance("output", ports, family, daddr=daddr,
                                       schedule=rule.schedule, offset=offset))
        if rule.sources.localhost and to.any:
            found.append(Allowance("output", ports, schedule=rule.schedule, offset=offset))
    if fw.ssh_sources is not None:
        for family in ("ip", "ip6"):
            sources = fw.ssh_sources.addresses.family(family)
            if sources:
                found.append(Allowance("input", (PortRange("tcp", fw.ssh_port, fw.ssh_port),),
                                       family, saddr=sources))
    if fw.ping_sources is not None:
        for family in ("ip", "ip6"):
            sources = None if fw.ping_sources.any else fw.ping_sources.addresses.family(family)
            if sources != ():
                found.append(Allowance("input", (ECHO,), family, saddr=sources))
    return found


def _publication_allowances(fw, rule, service) -> list[Allowance]:
    """What one service of a publication (one family of it) lets through:
    its allow_from (its own, or the publication's), its limit."""
    family = rule.family
    saddr = _allowed(service, family)
    if rule.external_address is None:     # routed: to the server's own address
        return [Allowance("forward", service.ports, family, saddr=saddr,
                          daddr=[(int(rule.server),) * 2], iifname=fw.external_interface,
                          oifname=fw.zone_named(rule.zone).interface, limit=service.limit)]
    external = [(int(rule.external_address),) * 2]
    server = None if rule.server is None else [(int(rule.server),) * 2]
    chain = "input" if rule.server is None else "forward"
    if service.server_port is None:
        return [Allowance(chain, service.ports, family, saddr=saddr,
                          daddr=external if server is None else server,
                          original_daddr=None if server is None else external,
                          limit=service.limit)]
    # after a redirect, the firewall's own server on any own address
    return [Allowance(chain, (served,), family, saddr=saddr, daddr=server,
                      original_daddr=external, original_ports=(published,),
                      limit=service.limit)
            for published, served in _redirected(service)]


def _allowed(service, family: str):
    """A published service's allowed sources in `family`; None for any."""
    sources = service.allow_from
    return None if sources.any else sources.addresses.family(family)


def _redirected(service):
    """(published port, server port) of a service with a server_port."""
    return [(port, PortRange(port.protocol, service.server_port, service.server_port))
            for port in service.ports]


# -- the checks ------------------------------------------------------------------

def _fixed(rule: Rule) -> bool:
    """One of the accepts docs/ruleset.md lists as unconditional."""
    keys = rule.keys()
    values = {k: {json.dumps(x) if isinstance(x, dict) else x
                  for v in rule.positive(k) for x in _items(v)} for k in keys}
    if keys == {"ct state"}:
        return bool(values["ct state"]) and values["ct state"] <= {"established", "related"}
    if rule.chain not in ("input", "output"):
        return False
    if keys == {"iif" if rule.chain == "input" else "oif"}:
        return values.get("iif", values.get("oif")) == {"lo"}
    if keys == {"icmpv6 type", "ip6 hoplimit"}:
        return values["icmpv6 type"] <= set(NEIGHBOUR_DISCOVERY) and values["ip6 hoplimit"] == {255}
    if keys == {"icmpv6 type", "ip6 saddr", "ip6 hoplimit"} and values["ip6 hoplimit"] == {1}:
        sources = [i for v in rule.positive("ip6 saddr") for i in _intervals(v, {})]
        if _within(sources, [LINK_LOCAL]):
            return values["icmpv6 type"] <= set(MLD)
        return sources == [(0, 0)] and values["icmpv6 type"] <= set(MLD_REPORTS)
    if keys == {"icmp type"}:
        return values["icmp type"] <= set(ICMP_ERRORS)
    if keys == {"icmpv6 type"}:
        return values["icmpv6 type"] <= set(ICMPV6_ERRORS)
    return False


def _block_problems(rules: list[Rule], policy: Policy, sets: dict) -> list[str]:
    """Blocked sources meet a drop or reject before any accept that is not
    replies, loopback, neighbour discovery or MLD (ICMP errors come after)."""
    fw = policy.firewall
    wanted = {family: fw.block.addresses.family(family) if fw.block else ()
              for family in ("ip", "ip6")}
    problems = []
    for chain in ("input", "forward"):
        covered: dict[str, list] = {"ip": [], "ip6": []}
        dynamic = set()
        for rule in (r for r in rules if r.chain == chain):
            family = next((f for f in covered if rule.keys() == {f"{f} saddr"}), None)
            if family and rule.verdict in ("drop", "reject"):
                for value in rule.positive(f"{family} saddr"):
                    covered[family] += _intervals(value, sets)
                    dynamic |= {item[1:] for item in _items(value) if isinstance(item, str)
                                and item.startswith("@")
                                and "timeout" in sets[item[1:]].get("flags", ())}
                continue
            if rule.verdict != "accept" or (_fixed(rule) and not rule.keys() <= {
                    "icmp type", "icmpv6 type"}):
                continue
            missing = [family for family, blocked in wanted.items()
                       if blocked and not _within(list(blocked), covered[family])]
            missing += [name for block in fw.dynamic_blocks
                        for name in (block.name + "_v4", block.name + "_v6")
                        if name not in dynamic]
            if missing:
                problems.append(f"accept before blocked sources are dropped "
                                f"({', '.join(missing)}): {rule}")
                break
    return problems


def _dispatched(raw_rules: list[dict]) -> tuple[list[dict], set[str]]:
    """The base chains' rules with each verdict map replaced, element by
    element, by the rules of the chain it jumps to (or its verdict), each
    with the element's key as matches first: what a packet with that key
    meets there; and the chains the maps reach."""
    inner: dict[str, list[dict]] = {}
    for raw in raw_rules:
        inner.setdefault(raw["chain"], []).append(raw)
    flat, reached = [], set()
    for raw in raw_rules:
        vmap = next((e["vmap"] for e in raw["expr"] if "vmap" in e), None)
        if raw["chain"] in BASE_CHAINS and _nat_map(raw) is not None:
            flat += _nat_mapped(raw)
            continue
        if raw["chain"] not in BASE_CHAINS or vmap is None:
            flat += [raw] if raw["chain"] in LISTED_CHAINS else []
            continue
        rest = [e for e in raw["expr"] if "vmap" not in e]
        fields = vmap["key"].get("concat", [vmap["key"]])
        for key, verdict in vmap["data"]["set"]:
            key = key["elem"]["val"] if "elem" in key else key
            values = key["concat"] if isinstance(key, dict) and "concat" in key else [key]
            matches = rest + [{"match": {"op": "==", "left": left, "right": value}}
                              for left, value in zip(fields, values)]
            target = verdict.get("jump", {}).get("target") if isinstance(verdict, dict) else None
            if target is None:
                flat.append(dict(raw, expr=matches + [verdict]))
                continue
            reached.add(target)
            flat += [dict(rule, chain=raw["chain"], expr=matches + rule["expr"])
                     for rule in inner.get(target, [])]
    return flat, reached


def _nat_map(raw: dict) -> Optional[dict]:
    """The DNAT statement of a rule that translates through a map, if any."""
    return next((e["dnat"] for e in raw["expr"] if "dnat" in e
                 and isinstance(e["dnat"].get("addr"), dict) and "map" in e["dnat"]["addr"]),
                None)


def _nat_mapped(raw: dict) -> list[dict]:
    """A DNAT map (`dnat ip to ip daddr . meta l4proto . th dport map {...}`)
    as one rule an element: the rule's other matches, the element's address
    and its protocol's port (`tcp dport 25`), and a DNAT to the element's
    value. A key of any other shape is kept whole, and judged as it is."""
    dnat = _nat_map(raw)
    fields = dnat["addr"]["map"]["key"].get("concat", [])
    if len(fields) != 3 or fields[1] != {"meta": {"key": "l4proto"}} \
            or fields[2] != {"payload": {"protocol": "th", "field": "dport"}}:
        return [raw]
    rest = [e for e in raw["expr"] if "dnat" not in e]
    flat = []
    for key, value in dnat["addr"]["map"]["data"]["set"]:
        address, protocol, port = key["concat"]
        matches = [{"match": {"op": "==", "left": fields[0], "right": address}},
                   {"match": {"op": "==", "left": {"payload": {"protocol": protocol,
                                                               "field": "dport"}},
                              "right": port}}]
        flat.append(dict(raw, expr=rest + matches + [
            {"dnat": {"family": dnat["family"], "addr": value}}]))
    return flat


def _chain_problems(chains: dict, rules: list[Rule], policy: Policy,
                    reached: frozenset = frozenset()) -> list[str]:
    problems = []
    for name, kind in BASE_CHAINS.items():
        chain = chains.get(name)
        if chain is None or chain.get("type") != kind or chain.get("hook") != name:
            problems.append(f"chain {name}: missing, or not a {kind} chain on hook {name}")
    for name in FILTER_CHAINS:
        verdict = getattr(policy.firewall, f"{name}_policy")
        listed = chains.get(name, {}).get("policy")
        if listed != ("accept" if verdict == "accept" else "drop"):
            problems.append(f"chain {name}: policy {listed}, but the policy says {verdict}")
        if verdict == "reject":
            last = [r.statements for r in rules if r.chain == name][-2:]
            if last != [[("reject", {"type": "tcp reset"})],
                        [("reject", {"type": "icmpx", "expr": "admin-prohibited"})]]:
                problems.append(f"chain {name}: the policy says reject, but the chain does "
                                "not end with the tcp reset and icmpx reject rules")
    for name in chains:
        if name not in LISTED_CHAINS and name not in reached:
            problems.append(f"chain {name}: not one of the chains docs/ruleset.md lists")
    return problems


def _antispoofing_problems(chains: dict, rules: list[Rule], policy: Policy,
                           sets: dict) -> list[str]:
    """Anti-spoofing's chain filters prerouting before connection tracking
    and only drops; with the policy's anti_spoofing, it drops every internal
    source (but those of NO_ONES) arriving on the external interface."""
    fw = policy.firewall
    chain = chains.get(ANTISPOOFING)
    problems = []
    if chain is not None and (chain.get("type"), chain.get("hook")) != ("filter", "prerouting") \
            or chain is not None and chain.get("prio", 0) >= CONNTRACK_PRIORITY:
        problems.append(f"chain {ANTISPOOFING}: not a filter chain on hook prerouting "
                        f"before connection tracking: {chain}")
    inside = [r for r in rules if r.chain == ANTISPOOFING]
    problems += [f"anti-spoofing does more than drop: {r}" for r in inside if r.verdict != "drop"
                 or {n for n, _ in r.statements} - {"drop", "counter", "log", "limit"}]
    if not fw.anti_spoofing or not fw.zones:
        return problems
    for family in ("ip", "ip6"):
        forged = _subtract(list(fw.internal_networks.family(family)), NO_ONES[family])
        dropped = [i for r in inside if r.verdict == "drop"
                   and r.keys() == {"iifname", f"{family} saddr"}
                   and any(_items(v) == [fw.external_interface] for v in r.positive("iifname"))
                   for v in r.positive(f"{family} saddr") for i in _intervals(v, sets)]
        if forged and not _within(forged, dropped):
            problems.append(f"anti-spoofing leaves {family} sources of the internal networks "
                            f"arriving on {fw.external_interface} undropped")
        for zone in fw.zones:
            # a drop of every source but those listed, all of them the zone's or no one's
            kept = [i for r in inside if r.verdict == "drop"
                    and r.keys() == {"iifname", f"{family} saddr"}
                    and any(_items(v) == [zone.interface] for v in r.positive("iifname"))
                    for k, op, v in r.matches if k == f"{family} saddr" and op == "!="
                    for i in [_intervals(v, sets)]]
            mine = list(zone.networks.family(family)) + NO_ONES[family]
            if not any(_within(listed, mine) for listed in kept):
                problems.append(f"anti-spoofing leaves {family} sources outside zone "
                                f"{zone.name} arriving on {zone.interface} undropped")
    return problems


def _subtract(intervals: list, holes: list) -> list:
    """`intervals` without the addresses in `holes`."""
    for low_hole, high_hole in holes:
        intervals = [part for low, high in intervals
                     for part in ((low, min(high, low_hole - 1)), (max(low, high_hole + 1), high))
                     if part[0] <= part[1]]
    return intervals


def _accept_problems(rule: Rule, allowed: list[Allowance], sets: dict) -> list[str]:
    if _fixed(rule):
        return []
    keys = rule.keys()
    problems = []
    if any("status" in k for k in keys):
        problems.append(f"accepts on ct status (e.g. everything DNATed): {rule}")
    ports = {k for k in keys if k.endswith(("dport", "sport", "proto-dst", "proto-src"))}
    addresses = {k for k in keys if k.endswith(("saddr", "daddr"))}
    # the firewall's own outbound to anywhere is a port alone by design
    if ports and not addresses and not keys & INTERFACE_KEYS and rule.chain != "output":
        problems.append(f"accepts by port alone: {rule}")
    if not any(a.admits(rule, sets) for a in allowed):
        problems.append(f"accept that the policy does not allow: {rule}")
    return problems


def _meters(rule: Rule) -> list[dict]:
    return [value for name, value in rule.statements if name == "set"]


def _key_prefix(key: dict, family: str) -> Optional[int]:
    """The prefix length a meter's key keeps of the source address (`ip6
    saddr & ffff:ffff:ffff:ffff::`: 64), None for any other key."""
    address = {"payload": {"protocol": family, "field": "saddr"}}
    if key == address:
        return 32 if family == "ip" else 128
    if not (isinstance(key, dict) and list(key) == ["&"] and key["&"][0] == address):
        return None
    mask = int(ipaddress.ip_address(key["&"][1]))
    bits = 32 if family == "ip" else 128
    prefix = bin(mask).count("1")
    return prefix if mask == ((1 << prefix) - 1) << (bits - prefix) else None


def _enforces(meter: dict, family: str, part: str, limit: Limit) -> bool:
    """Whether one listed meter keeps each source within `part` (new or
    concurrent) of `limit`: keyed on a network no narrower than the limit's
    prefix (a wider one puts more sources in one budget)."""
    prefix = _key_prefix(meter["elem"], family)
    if prefix is None or prefix > (limit.ipv4_prefix if family == "ip" else limit.ipv6_prefix):
        return False
    (kind, body), = meter["stmt"][0].items()
    if part == "new" and kind == "limit" and body.get("inv") and meter["op"] == "update":
        rate = body["rate"] * UNIT_SECONDS[limit.new.unit] / UNIT_SECONDS[body.get("per", "second")]
        return rate <= limit.new.count and body.get("burst", 0) <= (limit.burst or DEFAULT_BURST)
    if part == "concurrent" and kind == "ct count" and body.get("inv") and meter["op"] == "add":
        return body["val"] <= limit.concurrent
    return False


def _limit_problems(rule: Rule, earlier: list[Rule], allowed: list[Allowance],
                    sets: dict) -> list[str]:
    """An accept that only limited publications admit needs, before it, rules
    with its matches that turn away new connections of a source over each
    part of the limit."""
    admitting = [a for a in allowed if a.admits(rule, sets)]
    if not admitting or any(a.limit is None for a in admitting):
        return []
    turning_away = [r for r in earlier if r.verdict in ("drop", "reject")
                    and _items(r.positive("ct state")) == ["new"]]

    def own(r: Rule) -> list:
        return [m for m in r.matches if m[0] != "ct state"]

    def fails_closed(meter: dict) -> bool:
        """A full meter refuses a new source: the kernel skips the verdict
        of a rule whose update fails, so a rule must turn away a source the
        meter does not hold."""
        missing = (_key(meter["elem"]), "!=", meter["set"])
        return any(own(r) == rule.matches + [missing] for r in turning_away)
    guards = [meter for r in turning_away if own(r) == rule.matches
              for meter in _meters(r) if fails_closed(meter)]
    for a in admitting:
        parts = [part for part in ("new", "concurrent") if getattr(a.limit, part) is not None]
        if all(any(_enforces(m, a.family, part, a.limit) for m in guards) for part in parts):
            return []
    return [f"accept of a limited publication without its limits before it: {rule}"]


def _nat_problems(rule: Rule, policy: Policy, sets: dict) -> list[str]:
    fw = policy.firewall
    if rule.verdict == "redirect":
        return _redirect_problems(rule, policy, sets)
    if rule.verdict == "masquerade" or _zone_on(fw, rule, "oifname") is not None:
        return _hairpin_snat_problems(rule, policy, sets)
    externals = {int(a) for a in fw.external_addresses}
    target = int(ipaddress.ip_address(dict(rule.statements)[rule.verdict]["addr"]))
    if rule.verdict == "snat":
        ok = (rule.chain == "postrouting" and target in externals
              and any(_items(v) == [fw.external_interface] for v in rule.positive("oifname"))
              and any(k.endswith("saddr") for k in rule.keys()))
        return [] if ok else [f"SNAT not bound to the external interface and address: {rule}"]
    problems = []
    if rule.chain != "prerouting":
        problems.append(f"DNAT outside prerouting: {rule}")
    hairpin = _zone_on(fw, rule, "iifname")
    if hairpin is None and not any(_items(v) == [fw.external_interface]
                               for v in rule.positive("iifname")):
        problems.append(f"DNAT without the external interface: {rule}")
    bound = [d[0][0] for k in ("ip daddr", "ip6 daddr") for d in
             (_intervals(v, sets) for v in rule.positive(k))
             if len(d) == 1 and d[0][0] == d[0][1] and d[0][0] in externals]
    if not bound:
        problems.append(f"DNAT not bound to one external address of the firewall: {rule}")
    dports = [(k.split()[0], _ports(v)) for k, op, v in rule.matches
              if k in ("tcp dport", "udp dport") and op == "=="]
    dports += [(ECHO_PROTOCOL, [(ECHO.low, ECHO.high)]) for _ in _echo_families(rule)]
    if not dports:
        problems.append(f"DNAT without a port: {rule}")
    port = dict(rule.statements)["dnat"].get("port")
    if not problems and not any(
            p.server is not None and p.external_address is not None and int(p.server) == target
            and int(p.external_address) in bound
            and any(published.protocol == protocol and port == s.server_port
                    and _within(ports, [(published.low, published.high)])
                    and _sources_within(rule, p, s, sets, hairpin)
                    for protocol, ports in dports for s in p.services for published in s.ports)
            for p in policy.publish):
        problems.append(f"DNAT that no publish rule asks for: {rule}")
    return problems


def _zone_on(fw, rule: Rule, key: str):
    """The zone whose interface the rule matches as `key` (iifname, oifname)."""
    return next((zone for zone in fw.zones
                 if any(_items(v) == [zone.interface] for v in rule.positive(key))), None)


def _sources_within(rule: Rule, publication, service, sets: dict, hairpin) -> bool:
    """The rule's sources inside the service's allow_from; for a hairpin
    DNAT (from zone `hairpin`) also inside that zone's networks, and the
    publication's hairpin admits the zone."""
    family = publication.family
    limits = [_allowed(service, family)]
    if hairpin is not None:
        if hairpin.name not in publication.hairpin:
            return False
        limits.append(hairpin.networks.family(family))
    return all(limit is None
               or any(_within(_intervals(v, sets), limit) for v in rule.positive(f"{family} saddr"))
               for limit in limits)


def _redirect_problems(rule: Rule, policy: Policy, sets: dict) -> list[str]:
    """A redirect only in prerouting, on one external address and port of a
    localhost publication, to its server_port, for its allowed sources."""
    port = dict(rule.statements)["redirect"].get("port")
    dports = [(k.split()[0], _ports(v)) for k, op, v in rule.matches
              if k in ("tcp dport", "udp dport") and op == "=="]
    for p in policy.publish:
        if p.external_address is None:      # routed: nothing to redirect
            continue
        family = "ip" if p.external_address.version == 4 else "ip6"
        external = [(int(p.external_address),) * 2]
        if (p.server is None and rule.chain == "prerouting"
                and any(_within(_intervals(v, sets), external)
                        for v in rule.positive(f"{family} daddr"))
                and any(published.protocol == protocol and port == s.server_port
                        and _within(ports, [(published.low, published.high)])
                        for protocol, ports in dports for s in p.services
                        for published in s.ports)
                and any(_sources_within(rule, p, s, sets, None) for s in p.services)):
            return []
    return [f"redirect that no publish rule asks for: {rule}"]


def _hairpin_snat_problems(rule: Rule, policy: Policy, sets: dict) -> list[str]:
    """Source translation towards the inside only for hairpin connections
    within one zone: DNATed (ct status dnat), arriving on and leaving by the
    interface of the server's zone, from that zone's networks, to the server
    of a publication whose hairpin admits the zone; to the zone's address
    or masquerade."""
    fw = policy.firewall
    statement = dict(rule.statements)[rule.verdict]
    zone = _zone_on(fw, rule, "iifname")
    if zone is None or _zone_on(fw, rule, "oifname") is not zone:
        return [f"hairpin SNAT of connections that may have come from outside "
                f"or from another zone: {rule}"]
    if rule.verdict == "snat":
        target = ipaddress.ip_address(statement["addr"])
        if target not in zone.addresses:
            return [f"hairpin SNAT to an address that is not zone {zone.name}'s: {rule}"]
    dnat = any("dnat" in _items(v) for v in rule.positive("ct status"))
    for p in policy.publish:
        if zone.name not in p.hairpin or p.zone != zone.name or p.external_address is None:
            continue
        family = p.family
        if (dnat and rule.chain == "postrouting"
                and any(_within(_intervals(v, sets), [(int(p.server),) * 2])
                        for v in rule.positive(f"{family} daddr"))
                and any(_within(_intervals(v, sets), zone.networks.family(family))
                        for v in rule.positive(f"{family} saddr"))):
            return []
    return [f"source translation towards the inside beyond hairpin connections: {rule}"]


def check(listing: dict, policy: Policy) -> list[str]:
    """Every way the listed ruleset allows more than `policy`; [] when fail-closed."""
    items = [next(iter(entry.items())) for entry in listing["nftables"]]
    tables = [(t["family"], t["name"]) for kind, t in items if kind == "table"]
    if tables != [("inet", policy.firewall.table)]:
        return [f"expected exactly table inet {policy.firewall.table}, found {tables}"]
    sets = {s["name"]: s for kind, s in items if kind == "set"}
    chains = {c["name"]: c for kind, c in items if kind == "chain"}
    flat, reached = _dispatched([r for kind, r in items if kind == "rule"])
    rules = [Rule(r) for r in flat]
    problems = _chain_problems(chains, rules, policy, reached)
    problems += _antispoofing_problems(chains, rules, policy, sets)
    allowed = allowances(policy)
    problems += _block_problems(rules, policy, sets)
    for index, rule in enumerate(rules):
        others = {n for n, _ in rule.statements} - VERDICTS - {"counter", "log", "limit", "set"}
        if others:
            problems.append(f"unexpected statement {sorted(others)}: {rule}")
        if _meters(rule) and rule.verdict not in ("drop", "reject"):
            problems.append(f"a meter in a rule that does not drop or reject: {rule}")
        if rule.verdict == "accept" and rule.chain in FILTER_CHAINS:
            problems += _accept_problems(rule, allowed, sets)
            earlier = [r for r in rules[:index] if r.chain == rule.chain]
            problems += _limit_problems(rule, earlier, allowed, sets)
        elif rule.verdict in ("dnat", "snat", "masquerade", "redirect"):
            problems += _nat_problems(rule, policy, sets)
    return problems
