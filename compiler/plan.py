"""Plan stage: the policy model -> the ruleset as data (chains, sets, rules).

This is where every decision about the ruleset is made: which chain a rule
goes to, what it matches, which family it is emitted in, which set it uses.
The templates only print what is decided here, and tests and later tools
(`explain`, `diff`) can read the same plan.

The one rule that matters most: a match is never left out to make a rule
fit. A rule that would have no addresses in a family is not emitted in that
family (semantics has already rejected rules empty in every family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .model import FAMILIES, AddressRef, Policy, PortRange, Service, family_of

DAY_NAMES = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday",
             "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}
SET_TYPES = {"ip": "ipv4_addr", "ip6": "ipv6_addr"}
SET_SUFFIX = {"ip": "_v4", "ip6": "_v6"}
SSH = PortRange("tcp", 22, 22)


@dataclass(frozen=True)
class AddressMatch:
    """Addresses as one rule matches them: a named set, or elements written inline."""

    set_name: Optional[str] = None
    elements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    origin: tuple[str, ...]                 # its comment: ("publish", "exchange", "smtp")
    family: Optional[str] = None            # "ip" or "ip6" when the rule matches addresses
    iifname: Optional[str] = None
    oifname: Optional[str] = None
    saddr: Optional[AddressMatch] = None
    daddr: Optional[AddressMatch] = None
    protocol: Optional[str] = None          # "tcp" or "udp"
    dport: Optional[str] = None             # "25" or "2000-2010"
    original_daddr: Optional[str] = None    # `ct original ip daddr`: the address before DNAT
    original_dport: Optional[str] = None    # `ct original proto-dst`
    days: tuple[str, ...] = ()              # nft day names
    hours: Optional[tuple[str, str]] = None
    verdict: str = "accept"                 # accept, dnat or snat
    nat_to: Optional[str] = None


@dataclass(frozen=True)
class NftSet:
    name: str
    type: str
    elements: tuple[str, ...]


@dataclass(frozen=True)
class Chain:
    name: str
    type: str                  # "filter" or "nat"
    priority: str
    policy: str                # the chain policy nft takes: "accept" or "drop"
    reject: bool = False       # end with reject rules (the policy said `reject`)
    conntrack: bool = False    # established/related accept, invalid drop
    loopback: Optional[str] = None   # "iif" or "oif"
    neighbour_discovery: bool = False
    icmp_errors: bool = False
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Ruleset:
    table: str
    sets: tuple[NftSet, ...]
    chains: tuple[Chain, ...]


def port_text(port: PortRange) -> str:
    return str(port.low) if port.low == port.high else f"{port.low}-{port.high}"


def plan(policy: Policy) -> Ruleset:
    return _Planner(policy).ruleset()


class _Planner:
    def __init__(self, policy: Policy):
        self.policy = policy
        self.firewall = policy.firewall
        self.used_sets: dict[str, NftSet] = {}

    def ruleset(self) -> Ruleset:
        fw = self.firewall
        prerouting, forward_publish, input_publish = self._publishing()
        forward_out, output_out = self._outbound()
        chains = (
            Chain("prerouting", "nat", "dstnat", "accept", rules=tuple(prerouting)),
            self._filter_chain("input", fw.input_policy, loopback="iif",
                               rules=input_publish + self._management()),
            self._filter_chain("forward", fw.forward_policy, rules=forward_publish + forward_out),
            self._filter_chain("output", fw.output_policy, loopback="oif", rules=output_out),
            Chain("postrouting", "nat", "srcnat", "accept", rules=tuple(self._snat())),
        )
        sets = tuple(self.used_sets[name] for name in sorted(self.used_sets))
        return Ruleset(fw.table, sets, chains)

    @staticmethod
    def _filter_chain(name: str, verdict: str, rules: list[Rule],
                      loopback: Optional[str] = None) -> Chain:
        host = loopback is not None    # input and output: the firewall's own traffic
        return Chain(name, "filter", "filter",
                     policy="accept" if verdict == "accept" else "drop",
                     reject=verdict == "reject", conntrack=True, loopback=loopback,
                     neighbour_discovery=host, icmp_errors=host, rules=tuple(rules))

    # -- address matches ------------------------------------------------------

    def _match(self, ref: AddressRef, family: str) -> Optional[AddressMatch]:
        """How a rule matches `ref` in `family`; None when it has no such addresses."""
        elements = ref.addresses.texts(family)
        if not elements:
            return None
        if ref.set_name is not None:
            name = ref.set_name + SET_SUFFIX[family]
            self.used_sets[name] = NftSet(name, SET_TYPES[family], elements)
            return AddressMatch(set_name=name)
        return AddressMatch(elements=elements)

    @staticmethod
    def _single(address) -> AddressMatch:
        return AddressMatch(elements=(str(address),))

    # -- rules ------------------------------------------------------------------

    def _publishing(self) -> tuple[list[Rule], list[Rule], list[Rule]]:
        """DNAT + paired forward accept for internal servers; input accept for localhost."""
        fw = self.firewall
        prerouting, forward, input_ = [], [], []
        for rule in self.policy.publish:
            family = family_of(rule.external_address)
            external = str(rule.external_address)
            for service, port in _ports(rule.services):
                origin = ("publish", rule.name, service.name)
                dport = port_text(port)
                if rule.server is None:
                    input_.append(Rule(origin, family, daddr=self._single(external),
                                       protocol=port.protocol, dport=dport))
                    continue
                prerouting.append(Rule(origin, family, iifname=fw.external_interface,
                                       daddr=self._single(external), protocol=port.protocol,
                                       dport=dport, verdict="dnat", nat_to=str(rule.server)))
                forward.append(Rule(origin, family, oifname=fw.internal_interface,
                                    daddr=self._single(rule.server), protocol=port.protocol,
                                    dport=dport, original_daddr=external, original_dport=dport))
        return prerouting, forward, input_

    def _outbound(self) -> tuple[list[Rule], list[Rule]]:
        fw = self.firewall
        forward, output = [], []
        for rule in self.policy.outbound:
            schedule = rule.schedule
            days = tuple(DAY_NAMES[d] for d in schedule.days) if schedule else ()
            hours = schedule.hours if schedule else None
            # per family, the addresses of internal sources and of destinations
            # (None: any); a family that lacks either side gets no rule
            routed = []
            for family in FAMILIES:
                saddr = self._match(rule.sources, family)
                if saddr is None:
                    continue
                daddr = None if rule.destinations.any else self._match(rule.destinations, family)
                if rule.destinations.any or daddr is not None:
                    routed.append((family, saddr, daddr))
            local = []
            if rule.sources.localhost:
                local = [(None, None)] if rule.destinations.any else [
                    (family, daddr) for family in FAMILIES
                    if (daddr := self._match(rule.destinations, family)) is not None]
            for service, port in _ports(rule.services, skip_repeats=True):
                origin = ("outbound", rule.name, service.name)
                common = dict(protocol=port.protocol, dport=port_text(port), days=days, hours=hours)
                for family, saddr, daddr in routed:
                    forward.append(Rule(origin, family, iifname=fw.internal_interface,
                                        oifname=fw.external_interface, saddr=saddr,
                                        daddr=daddr, **common))
                # no oifname: the firewall reaches what `to` names on any
                # interface, internal hosts included
                for family, daddr in local:
                    output.append(Rule(origin, family, daddr=daddr, **common))
        return forward, output

    def _management(self) -> list[Rule]:
        sources = self.firewall.ssh_sources
        if sources is None:
            return []
        rules = []
        for family in FAMILIES:
            saddr = self._match(sources, family)
            if saddr is not None:
                rules.append(Rule(("management", "ssh"), family, saddr=saddr,
                                  protocol=SSH.protocol, dport=port_text(SSH)))
        return rules

    def _snat(self) -> list[Rule]:
        """Published servers leave as their published address; the rest of the
        internal networks as the first external address of their family."""
        fw = self.firewall
        rules, seen = [], set()
        for rule in self.policy.publish:
            if rule.server is None or rule.server in seen:
                continue
            seen.add(rule.server)
            rules.append(Rule(("snat", rule.name), family_of(rule.server),
                              oifname=fw.external_interface, saddr=self._single(rule.server),
                              verdict="snat", nat_to=str(rule.external_address)))
        if fw.internal_interface is None:
            return rules
        for family in FAMILIES:
            external = fw.first_external(family)
            networks = fw.internal_networks.texts(family)
            if external is None or not networks:
                continue
            rules.append(Rule(("snat", "internal"), family, oifname=fw.external_interface,
                              saddr=AddressMatch(elements=networks),
                              verdict="snat", nat_to=str(external)))
        return rules


def _ports(services: tuple[Service, ...], skip_repeats: bool = False):
    """(service, port) pairs in policy order; with skip_repeats, a port already
    covered by an earlier service of the same rule is not repeated."""
    seen = set()
    for service in services:
        for port in service.ports:
            if skip_repeats and port in seen:
                continue
            seen.add(port)
            yield service, port
