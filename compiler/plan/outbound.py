"""The rules of `outbound` (forward for internal sources, output for the
firewall's own), one a UTC window of their schedule, and the source
translation of what leaves by the external interface."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Optional

from ..addresses import subtract
from ..model import Firewall, Outbound, Policy, Schedule, family_of
from ..schedule import utc_windows
from ..vocab import FAMILIES
from .fixed import ACCEPT
from .ir import AddressMatch, DayMatch, HourMatch, InterfaceMatch, Match, Nat, Origin, Rule
from .matching import address_match, dports, ports, single


def outbound(policy: Policy, zone: Optional[tzinfo], at: datetime) -> tuple[list[Rule], list[Rule]]:
    """The forward and the output rules of every outbound rule."""
    fw = policy.firewall
    forward, output = [], []
    for rule in policy.outbound:
        times = time_matches(rule.schedule, zone, at)
        routed, local = _routed_pairs(rule), _local_destinations(rule)
        for service, port in ports(rule.services):
            origin = Origin("outbound", rule.name, service.name, rule.position)
            for saddr, daddr in routed:
                addresses = (saddr,) if daddr is None else (saddr, daddr)
                dport, = dports(port, (saddr.family,))
                forward += [Rule(origin, (InterfaceMatch("iif", fw.internal_interface),
                                          InterfaceMatch("oif", fw.external_interface),
                                          *addresses, dport, *time), (ACCEPT,))
                            for time in times]
            for daddr in local:     # on any interface: `to` may be inside too
                addresses = () if daddr is None else (daddr,)
                for dport in dports(port, FAMILIES if daddr is None else (daddr.family,)):
                    output += [Rule(origin, (*addresses, dport, *time), (ACCEPT,))
                               for time in times]
    return forward, output


def _routed_pairs(rule: Outbound) -> list[tuple[AddressMatch, Optional[AddressMatch]]]:
    """Per family, the addresses of internal sources and of destinations
    (None: any); a family that lacks either side gets no rule."""
    routed = []
    for family in FAMILIES:
        saddr = address_match(rule.sources, family, "saddr")
        if saddr is None:
            continue
        daddr = None if rule.destinations.any else address_match(rule.destinations, family,
                                                                 "daddr")
        if rule.destinations.any or daddr is not None:
            routed.append((saddr, daddr))
    return routed


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
    if fw.internal_interface is None:
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
