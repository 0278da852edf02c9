"""Plan stage: the policy model -> the ruleset as typed data.

Every decision about the ruleset is made here: which chains exist, which
rules each holds and in what order, what each rule matches, which family it
is emitted in, which named set it uses, what it translates to. Fixed rules
(conntrack, loopback, neighbour discovery, ICMP errors, the reject tail) are
plan data like every other rule. The generators (`generate/text.py`,
`generate/json.py`) only print a plan, and `explain`, `diff` and the tests
read the same plan.

A rule is its origin (the policy rule, service and position it comes from),
its matches and its statements. Matches hold numbers and intervals, never
formatted text.

The rule that matters most: a match is never left out to make a rule fit. A
rule that would have no addresses in a family is not emitted in that family
(semantics has already rejected rules empty in every family).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar, Optional, Union

from .addresses import Address, Interval, host_mask, merge, parse_network
from .diagnostics import Position
from .model import AddressRef, Policy, Schedule, Service, family_of
from .schedule import ZoneNote, schedule_zone, utc_windows, zone_note
from .vocab import (FAMILIES, ICMP_ERRORS, ICMPV6_ERRORS, MLD, MLD_REPORTS, NEIGHBOUR_DISCOVERY,
                    SET_SUFFIX, SSH, PortRange)

# -- where a rule comes from ------------------------------------------------------

@dataclass(frozen=True)
class Origin:
    """Why a rule exists: `kind` is publish, outbound, management, snat, fixed
    (the rules every ruleset has) or policy (a chain's reject tail); `name` is
    the policy rule's name (or what the fixed rule does, or the chain)."""

    kind: str
    name: str
    service: Optional[str] = None
    position: Optional[Position] = field(default=None, compare=False)


# -- matches ----------------------------------------------------------------------

@dataclass(frozen=True)
class InterfaceMatch:
    kind: ClassVar[str] = "interface"
    direction: str              # "iif" or "oif"
    name: str
    by_index: bool = False      # `iif "lo"` (an index, for lo) instead of `iifname "eth0"`


@dataclass(frozen=True)
class AddressMatch:
    """Addresses as a rule matches them: a named set, or intervals written inline."""

    kind: ClassVar[str] = "address"
    family: str                 # "ip" or "ip6"
    field: str                  # "saddr" or "daddr"
    intervals: tuple[Interval, ...] = ()
    set_name: Optional[str] = None
    original: bool = False      # `ct original ip daddr`: the address before DNAT


@dataclass(frozen=True)
class PortMatch:
    kind: ClassVar[str] = "port"
    protocol: str               # "tcp" or "udp"
    low: int
    high: int
    original: bool = False      # `ct original proto-dst`: the port before DNAT


@dataclass(frozen=True)
class ProtocolMatch:
    kind: ClassVar[str] = "protocol"
    protocol: str               # `meta l4proto tcp`


@dataclass(frozen=True)
class IcmpTypeMatch:
    kind: ClassVar[str] = "icmp"
    protocol: str               # "icmp" or "icmpv6"
    types: tuple[str, ...]


@dataclass(frozen=True)
class HopLimitMatch:
    kind: ClassVar[str] = "hoplimit"
    value: int                  # `ip6 hoplimit 255`


@dataclass(frozen=True)
class ConntrackMatch:
    kind: ClassVar[str] = "conntrack"
    states: tuple[str, ...]     # `ct state established,related`


@dataclass(frozen=True)
class DayMatch:
    kind: ClassVar[str] = "day"
    days: tuple[int, ...]       # nft's day numbers, 0 = Sunday


@dataclass(frozen=True)
class HourMatch:
    kind: ClassVar[str] = "hour"
    first: int                  # first and last second of the day, inclusive
    last: int


@dataclass(frozen=True)
class ConntrackStatusMatch:
    kind: ClassVar[str] = "ctstatus"
    status: str                 # `ct status dnat`: the connection was destination-translated


Match = Union[InterfaceMatch, AddressMatch, PortMatch, ProtocolMatch, IcmpTypeMatch,
              HopLimitMatch, ConntrackMatch, DayMatch, HourMatch, ConntrackStatusMatch]


# -- statements -------------------------------------------------------------------

@dataclass(frozen=True)
class Nat:
    kind: ClassVar[str] = "nat"
    type: str                   # "dnat" or "snat"
    family: str
    address: Address
    port: Optional[int] = None


@dataclass(frozen=True)
class Verdict:
    kind: ClassVar[str] = "verdict"
    verdict: str                        # accept, drop or reject
    reject_type: Optional[str] = None   # `reject with tcp reset`, `reject with icmpx type CODE`
    reject_code: Optional[str] = None


@dataclass(frozen=True)
class Jump:
    """A jump to a regular chain (hook None) of the same table."""

    kind: ClassVar[str] = "jump"
    target: str


@dataclass(frozen=True)
class Redirect:
    """`redirect to :PORT`: to the firewall itself (the incoming interface's
    primary address), on another port."""

    kind: ClassVar[str] = "redirect"
    port: int


@dataclass(frozen=True)
class Masquerade:
    """`masquerade`: source-translate to the outgoing interface's address."""

    kind: ClassVar[str] = "masquerade"


Statement = Union[Nat, Verdict, Jump, Redirect, Masquerade]


# -- the ruleset --------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    origin: Origin
    matches: tuple[Match, ...]
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class NftSet:
    name: str
    family: str
    intervals: tuple[Interval, ...]
    flags: tuple[str, ...] = ("interval",)


@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain; regular chains (jump targets) have none."""

    type: str                   # "filter" or "nat"
    hook: str                   # prerouting, input, forward, output, postrouting
    priority: str               # dstnat, filter, srcnat
    policy: str                 # accept or drop: what nft takes as a chain policy


@dataclass(frozen=True)
class Chain:
    name: str
    hook: Optional[Hook]
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Ruleset:
    table: str
    sets: tuple[NftSet, ...]
    chains: tuple[Chain, ...]
    zone: Optional[ZoneNote] = None     # the schedules' zone and offset, when a rule has one


ACCEPT = Verdict("accept")
DROP = Verdict("drop")


def plan(policy: Policy, at: Optional[datetime] = None) -> Ruleset:
    """The ruleset; schedules take their zone's UTC offset at `at` (default now)."""
    return _Planner(policy, at or datetime.now(timezone.utc)).ruleset()


def _fixed(name: str, *matches: Match, verdict: Verdict = ACCEPT) -> Rule:
    return Rule(Origin("fixed", name), matches, (verdict,))


def _network(text: str) -> Interval:
    version, first, prefix = parse_network(text)
    return first, first | host_mask(version, prefix)


# The rules every ruleset has (docs/ruleset.md says why each is there).
NEIGHBOUR_RULE = _fixed("neighbour discovery", IcmpTypeMatch("icmpv6", NEIGHBOUR_DISCOVERY),
                        HopLimitMatch(255))
LINK_LOCAL = _network("fe80::/10")
# MLD keeps the firewall's multicast memberships (its solicited-node groups)
# alive on a snooping switch: link-local, hop limit 1; reports may also come
# from :: while an address is still tentative.
MLD_RULES = (_fixed("mld", IcmpTypeMatch("icmpv6", MLD),
                    AddressMatch("ip6", "saddr", (LINK_LOCAL,)), HopLimitMatch(1)),
             _fixed("mld", IcmpTypeMatch("icmpv6", MLD_REPORTS),
                    AddressMatch("ip6", "saddr", ((0, 0),)), HopLimitMatch(1)))
CONNTRACK_RULES = (_fixed("replies", ConntrackMatch(("established", "related"))),
                   _fixed("invalid", ConntrackMatch(("invalid",)), verdict=DROP))
ICMP_ERROR_RULES = (_fixed("icmp errors", IcmpTypeMatch("icmp", ICMP_ERRORS)),
                    _fixed("icmpv6 errors", IcmpTypeMatch("icmpv6", ICMPV6_ERRORS)))


def _reject_tail(chain: str) -> tuple[Rule, ...]:
    """What `reject` adds before the chain's drop policy: a TCP reset for TCP,
    ICMP administratively prohibited for the rest."""
    origin = Origin("policy", chain)
    return (Rule(origin, (ProtocolMatch("tcp"),), (Verdict("reject", "tcp reset"),)),
            Rule(origin, (), (Verdict("reject", "icmpx", "admin-prohibited"),)))


class _Planner:
    def __init__(self, policy: Policy, at: datetime):
        self.policy = policy
        self.firewall = policy.firewall
        self.used_sets: dict[str, NftSet] = {}
        self.at = at
        self.zone = None
        if any(rule.schedule for rule in policy.outbound):
            self.zone = schedule_zone(policy.firewall.timezone)

    def ruleset(self) -> Ruleset:
        fw = self.firewall
        prerouting, forward_publish, input_publish = self._publishing()
        hairpin_dnat, hairpin_snat = self._hairpin()
        forward_out, output_out = self._outbound()
        chains = (
            Chain("prerouting", Hook("nat", "prerouting", "dstnat", "accept"),
                  tuple(prerouting + hairpin_dnat)),
            self._filter_chain("input", fw.input_policy, input_publish + self._management()),
            self._filter_chain("forward", fw.forward_policy, forward_publish + forward_out),
            self._filter_chain("output", fw.output_policy, output_out),
            Chain("postrouting", Hook("nat", "postrouting", "srcnat", "accept"),
                  tuple(self._snat() + hairpin_snat)),
        )
        sets = tuple(self.used_sets[name] for name in sorted(self.used_sets))
        note = zone_note(*self.zone, self.at) if self.zone else None
        return Ruleset(fw.table, sets, chains, note)

    @staticmethod
    def _filter_chain(name: str, verdict: str, rules: list[Rule]) -> Chain:
        """Input and output (the firewall's own traffic) also take neighbour
        discovery, loopback and ICMP errors; forward only conntrack."""
        host = name != "forward"
        fixed = []
        if host:
            fixed.append(NEIGHBOUR_RULE)
            fixed.extend(MLD_RULES)
        fixed.extend(CONNTRACK_RULES)
        if host:
            direction = "iif" if name == "input" else "oif"
            fixed.append(_fixed("loopback", InterfaceMatch(direction, "lo", by_index=True)))
            fixed.extend(ICMP_ERROR_RULES)
        tail = _reject_tail(name) if verdict == "reject" else ()
        hook = Hook("filter", name, "filter", "accept" if verdict == "accept" else "drop")
        return Chain(name, hook, tuple(fixed) + tuple(rules) + tail)

    # -- address matches ------------------------------------------------------

    def _match(self, ref: AddressRef, family: str, field_: str) -> Optional[AddressMatch]:
        """How a rule matches `ref` in `family`; None when it has no such addresses."""
        intervals = ref.addresses.family(family)
        if not intervals:
            return None
        if ref.set_name is not None:
            name = ref.set_name + SET_SUFFIX[family]
            self.used_sets[name] = NftSet(name, family, intervals)
            return AddressMatch(family, field_, set_name=name)
        return AddressMatch(family, field_, intervals)

    @staticmethod
    def _single(address: Address, field_: str, original: bool = False) -> AddressMatch:
        value = int(address)
        return AddressMatch(family_of(address), field_, ((value, value),), original=original)

    # -- rules ------------------------------------------------------------------

    def _publishing(self) -> tuple[list[Rule], list[Rule], list[Rule]]:
        """DNAT + paired forward accept for internal servers; input accept for
        localhost, after a redirect when the server listens on another port.
        Every rule matches allow_from's sources, so others are not translated."""
        fw = self.firewall
        prerouting, forward, input_ = [], [], []
        for rule in self.policy.publish:
            sources = self._allowed(rule.allow_from, family_of(rule.external_address))
            for service, port in _ports(rule.services):
                origin = Origin("publish", rule.name, service.name, rule.position)
                external = self._single(rule.external_address, "daddr")
                dport = PortMatch(port.protocol, port.low, port.high)
                served = _served(service, port)
                original = (self._single(rule.external_address, "daddr", original=True),
                            PortMatch(port.protocol, port.low, port.high, original=True))
                if rule.server is None and service.server_port is None:
                    input_.append(Rule(origin, (*sources, external, dport), (ACCEPT,)))
                    continue
                if rule.server is None:
                    prerouting.append(Rule(origin, (*sources, external, dport),
                                           (Redirect(service.server_port),)))
                    input_.append(Rule(origin, (*sources, served, *original), (ACCEPT,)))
                    continue
                family = family_of(rule.server)
                prerouting.append(Rule(
                    origin,
                    (InterfaceMatch("iif", fw.external_interface), *sources, external, dport),
                    (Nat("dnat", family, rule.server, service.server_port),)))
                forward.append(Rule(
                    origin,
                    (InterfaceMatch("oif", fw.internal_interface), *sources,
                     self._single(rule.server, "daddr"), served, *original),
                    (ACCEPT,)))
        return prerouting, forward, input_

    def _allowed(self, sources: AddressRef, family: str) -> tuple[AddressMatch, ...]:
        """allow_from as a source match in `family`; none for any (semantics
        has refused an allow_from with no address of the publication's family)."""
        if sources.any:
            return ()
        return (self._match(sources, family, "saddr"),)

    def _hairpin(self) -> tuple[list[Rule], list[Rule]]:
        """For hairpin publications, the DNAT of internal clients (from the
        internal interface, in the internal networks and allow_from) and, for
        those connections only, the source translation that brings the
        server's replies back through the firewall."""
        fw = self.firewall
        prerouting, postrouting, seen = [], [], set()
        for rule in self.policy.publish:
            if not rule.hairpin:
                continue
            family = family_of(rule.external_address)
            clients = fw.internal_networks
            if not rule.allow_from.any:
                clients = clients.intersection(rule.allow_from.addresses)
            internal = fw.internal_address(family)
            for service, port in _ports(rule.services):
                origin = Origin("hairpin", rule.name, service.name, rule.position)
                prerouting.append(Rule(
                    origin, (InterfaceMatch("iif", fw.internal_interface),
                             AddressMatch(family, "saddr", clients.family(family)),
                             self._single(rule.external_address, "daddr"),
                             PortMatch(port.protocol, port.low, port.high)),
                    (Nat("dnat", family, rule.server, service.server_port),)))
                served = _served(service, port)
                if (rule.server, served) in seen:
                    continue
                seen.add((rule.server, served))
                postrouting.append(Rule(
                    origin, (InterfaceMatch("oif", fw.internal_interface),
                             ConntrackStatusMatch("dnat"),
                             AddressMatch(family, "saddr", fw.internal_networks.family(family)),
                             self._single(rule.server, "daddr"), served),
                    (Masquerade() if internal is None else Nat("snat", family, internal),)))
        return prerouting, postrouting

    def _outbound(self) -> tuple[list[Rule], list[Rule]]:
        fw = self.firewall
        forward, output = [], []
        for rule in self.policy.outbound:
            times = self._time_matches(rule.schedule)
            # per family, the addresses of internal sources and of destinations
            # (None: any); a family that lacks either side gets no rule
            routed = []
            for family in FAMILIES:
                saddr = self._match(rule.sources, family, "saddr")
                if saddr is None:
                    continue
                daddr = (None if rule.destinations.any
                         else self._match(rule.destinations, family, "daddr"))
                if rule.destinations.any or daddr is not None:
                    routed.append((saddr, daddr))
            local = []
            if rule.sources.localhost:
                local = [None] if rule.destinations.any else [
                    daddr for family in FAMILIES
                    if (daddr := self._match(rule.destinations, family, "daddr")) is not None]
            for service, port in _ports(rule.services):
                origin = Origin("outbound", rule.name, service.name, rule.position)
                dport = PortMatch(port.protocol, port.low, port.high)
                for saddr, daddr in routed:
                    addresses = (saddr,) if daddr is None else (saddr, daddr)
                    for time in times:
                        forward.append(Rule(
                            origin, (InterfaceMatch("iif", fw.internal_interface),
                                     InterfaceMatch("oif", fw.external_interface),
                                     *addresses, dport, *time), (ACCEPT,)))
                for daddr in local:     # on any interface: `to` may be inside too
                    addresses = () if daddr is None else (daddr,)
                    for time in times:
                        output.append(Rule(origin, (*addresses, dport, *time), (ACCEPT,)))
        return forward, output

    def _time_matches(self, schedule: Optional[Schedule]) -> list[tuple[Match, ...]]:
        """The time matches of one rule per UTC window of the schedule
        (schedule.py); one rule without time matches when there is none."""
        if schedule is None:
            return [()]
        return [tuple(([DayMatch(window.days)] if window.days else [])
                      + ([HourMatch(*window.hours)] if window.hours else []))
                for window in utc_windows(schedule, self.zone[0], self.at)]

    def _management(self) -> list[Rule]:
        sources = self.firewall.ssh_sources
        if sources is None:
            return []
        origin = Origin("management", "ssh", position=sources.position)
        return [Rule(origin, (saddr, PortMatch(SSH.protocol, SSH.low, SSH.high)), (ACCEPT,))
                for family in FAMILIES
                if (saddr := self._match(sources, family, "saddr")) is not None]

    def _snat(self) -> list[Rule]:
        """Published servers leave as their published address; the rest of the
        internal networks as the first external address of their family."""
        fw = self.firewall
        rules, seen = [], set()
        for rule in self.policy.publish:
            if rule.server is None or rule.server in seen:
                continue
            seen.add(rule.server)
            rules.append(Rule(
                Origin("snat", rule.name, position=rule.position),
                (InterfaceMatch("oif", fw.external_interface), self._single(rule.server, "saddr")),
                (Nat("snat", family_of(rule.server), rule.external_address),)))
        if fw.internal_interface is None:
            return rules
        for family in FAMILIES:
            external = fw.first_external(family)
            networks = fw.internal_networks.family(family)
            if external is None or not networks:
                continue
            rules.append(Rule(
                Origin("snat", "internal"),
                (InterfaceMatch("oif", fw.external_interface),
                 AddressMatch(family, "saddr", networks)),
                (Nat("snat", family, external),)))
        return rules


def _served(service: Service, port: PortRange) -> PortMatch:
    """The port the server listens on for a published `port`."""
    if service.server_port is None:
        return PortMatch(port.protocol, port.low, port.high)
    return PortMatch(port.protocol, service.server_port, service.server_port)


def _ports(services: tuple[Service, ...]):
    """(service, port) pairs in policy order, each port of a rule once, so a
    published port is translated and accepted by one rule: a port belongs to
    the first service that names it, and a later service keeps only the parts
    of its ranges no earlier one covers (smtp tcp/25, then tcp/20-30, gives
    25, then 20-24 and 26-30)."""
    covered: dict[str, list[tuple[int, int]]] = {"tcp": [], "udp": []}
    for service in services:
        for port in service.ports:
            taken = covered[port.protocol]
            for low, high in _uncovered(port.low, port.high, taken):
                yield service, PortRange(port.protocol, low, high)
            taken.append((port.low, port.high))


def _uncovered(low: int, high: int, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of the range low-high outside every range in `taken`."""
    parts = []
    for taken_low, taken_high in merge(taken):
        if taken_high < low or taken_low > high:
            continue
        if taken_low > low:
            parts.append((low, taken_low - 1))
        low = taken_high + 1
    if low <= high:
        parts.append((low, high))
    return parts
