"""The rules of `outbound` (forward for internal sources, output for the
firewall's own), one a UTC window of their schedule, and the source
translation of what leaves by the external interface."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Optional

from ..addresses import intersect, subtract
from ..model import AddressRef, Firewall, Outbound, Policy, Schedule, family_of
from ..schedule import utc_windows
from ..vocab import FAMILIES
from .fixed import ACCEPT
from .ir import (AddressMatch, DayMatch, HourMatch, InterfaceMatch, Match, Nat, Origin, Rule,
                 SocketUserMatch)
from .matching import address_match, dports, ports, single


def outbound(policy: Policy, zone: Optional[tzinfo], at: datetime) -> tuple[list[Rule], list[Rule]]:
    """The forward and the output rules of every outbound rule."""
    fw = policy.firewall
    forward, output = [], []
    for rule in policy.outbound:
        times = time_matches(rule.schedule, zone, at)
        routed, local = _routed_paths(rule, fw), _local_destinations(rule)
        for service, port in ports(rule.services):
            origin = Origin("outbound", rule.name, service.name, rule.position)
            for iif, oif, saddr, daddr in routed:
                addresses = (saddr,) if daddr is None else (saddr, daddr)
                dport, = dports(port, (saddr.family,))
                forward += [Rule(origin, (InterfaceMatch("iif", iif), InterfaceMatch("oif", oif),
                                          *addresses, dport, *time), (ACCEPT,))
                            for time in times]
            for daddr in local:     # on any interface: `to` may be inside too
                addresses = (() if daddr is None else (daddr,)) + (
                    () if rule.user is None else (SocketUserMatch(rule.user),))
                for dport in dports(port, FAMILIES if daddr is None else (daddr.family,)):
                    output += [Rule(origin, (*addresses, dport, *time), (ACCEPT,))
                               for time in times]
    return forward, output


Path = tuple[str, str, AddressMatch, Optional[AddressMatch]]


def _routed_paths(rule: Outbound, fw: Firewall) -> list[Path]:
    """(incoming and outgoing interface, source and destination match; None:
    any) of each way the rule's internal sources take, per family and source
    zone: to the outside by the external interface (`to` omitted: the
    outside only), and to the destinations in each other zone by that
    zone's interface. A family that lacks either side gets no rule; a
    destination in the source's own zone never crosses the firewall."""
    paths = []
    for family in FAMILIES:
        sources = address_match(rule.sources, family, "saddr")
        if sources is None:
            continue
        for zone in fw.zones:
            saddr = _within(rule.sources, sources, zone.networks.family(family))
            if saddr is None:
                continue
            if rule.destinations.any:
                paths.append((zone.interface, fw.external_interface, saddr, None))
                continue
            targets = address_match(rule.destinations, family, "daddr")
            outside = _within(rule.destinations, targets, subtract(
                rule.destinations.addresses.family(family), fw.internal_networks.family(family)))
            if outside is not None:
                paths.append((zone.interface, fw.external_interface, saddr, outside))
            paths += [(zone.interface, other.interface, saddr, daddr) for other in fw.zones
                      if other is not zone and (daddr := _within(
                          rule.destinations, targets, other.networks.family(family))) is not None]
    return paths


def _within(ref: AddressRef, whole: Optional[AddressMatch], intervals) -> Optional[AddressMatch]:
    """`whole` (the match of all of `ref`) narrowed to `intervals`: itself
    (its named set) when they hold all of it, None when none of it."""
    if whole is None:
        return None
    mine = ref.addresses.family(whole.family)
    kept = intersect(mine, tuple(intervals))
    if kept == mine:
        return whole
    return AddressMatch(whole.family, whole.field, kept) if kept else None


def _local_destinations(rule: Outbound) -> list[Optional[AddressMatch]]:
    """The destinations of the firewall's own connections (None: any), when
    the rule's sources include localhost."""
    if not rule.sources.localhost:
        return []
    if rule.destinations.any:
        return [None]
    return [daddr for family in FAMILIES
            if (daddr := address_match(rule.destinations, family, "daddr")) is not None]


def time_matches(schedule: Optional[Schedule], zone: Optional[tzinfo],
                 at: datetime) -> list[tuple[Match, ...]]:
    """The time matches of one rule per UTC window of the schedule
    (schedule.py); one rule without time matches when there is none."""
    if schedule is None:
        return [()]
    return [tuple(([DayMatch(window.days)] if window.days else [])
                  + ([HourMatch(*window.hours)] if window.hours else []))
            for window in utc_windows(schedule, zone, at)]


def snat(policy: Policy) -> list[Rule]:
    """Published servers leave as their published address; the rest of the
    internal networks as the first external address of their family."""
    fw = policy.firewall
    rules, seen = [], set()
    for rule in policy.publish:
        if rule.server is None or rule.external_address is None or rule.server in seen:
            continue
        seen.add(rule.server)
        rules.append(Rule(
            Origin("snat", rule.name, position=rule.position),
            (InterfaceMatch("oif", fw.external_interface), single(rule.server, "saddr")),
            (Nat("snat", family_of(rule.server), rule.external_address),)))
    return rules + _internal_snat(fw)


def _internal_snat(fw: Firewall) -> list[Rule]:
    if not fw.zones:
        return []
    rules = []
    for family in FAMILIES:
        external = fw.first_external(family)
        networks = subtract(fw.internal_networks.family(family),
                            fw.routed_networks.family(family))
        if external is not None and networks:
            rules.append(Rule(Origin("snat", "internal"),
                              (InterfaceMatch("oif", fw.external_interface),
                               AddressMatch(family, "saddr", networks)),
                              (Nat("snat", family, external),)))
    return rules
