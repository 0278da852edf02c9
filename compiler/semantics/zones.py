"""Checks of the internal zones (`firewall.internal`): each zone its own
name, interface and networks, and the addresses it is given inside them."""

from __future__ import annotations

from itertools import combinations

from ..addresses import interval_texts, subtract
from ..diagnostics import Collector, line_of
from ..model import Addresses, Policy, Zone, family_of
from ..vocab import FAMILIES, FAMILY_NAMES, VERSIONS

RESERVED = ("localhost", "any")



def check_zones(policy: Policy, problems: Collector) -> None:
    firewall = policy.firewall
    first_named: dict[str, Zone] = {}
    first_on: dict[str, Zone] = {}
    for zone in firewall.zones:
        if zone.name in first_named:
            problems.error(zone.position, f"zone name {zone.name!r} is already used "
                                          f"({line_of(first_named[zone.name].position)})")
        elif zone.name in RESERVED:
            problems.error(zone.position, f"{zone.name!r} is a reserved word and cannot "
                                          "name a zone")
        first_named.setdefault(zone.name, zone)
        if zone.interface == firewall.external_interface:
            problems.error(zone.interface_position,
                           (f"zone {zone.name!r}: interface" if zone.listed
                            else "the internal interface")
                           + f" {zone.interface!r} is also the external interface; "
                             "they must differ")
        elif zone.interface in first_on:
            other = first_on[zone.interface]
            problems.error(zone.interface_position,
                           f"zone {zone.name!r}: interface {zone.interface!r} is already the "
                           f"interface of zone {other.name!r} ({line_of(other.interface_position)})")
        first_on.setdefault(zone.interface, zone)
        _inside(zone, problems)
    for one, other in combinations(firewall.zones, 2):
        shared = one.networks.intersection(other.networks)
        if shared:
            problems.error(other.networks_position,
                           f"networks of zone {other.name!r} overlap those of zone "
                           f"{one.name!r} ({line_of(one.networks_position)}): "
                           + ", ".join(_texts(shared)))


def _texts(addresses: Addresses) -> list[str]:
    return [text for family in FAMILIES for interval in addresses.family(family)
            for text in interval_texts(VERSIONS[family], interval)]


def _inside(zone: Zone, problems: Collector) -> None:
    """A zone's routed networks and own addresses lie in its networks."""
    outside = [text for family in FAMILIES
               for i in subtract(zone.routed.family(family), zone.networks.family(family))
               for text in interval_texts(VERSIONS[family], i)]
    if outside:
        problems.error(zone.routed_position,
                       f"routed networks must lie inside {networks_of(zone)} "
                       f"({', '.join(_texts(zone.networks))}): " + ", ".join(outside))
    key = f"the address of zone {zone.name!r}" if zone.listed else "firewall.internal.address"
    for family in FAMILIES:
        mine = [a for a in zone.addresses if family_of(a) == family]
        if len(mine) > 1:
            problems.error(zone.address_position,
                           f"{key} lists {len(mine)} {FAMILY_NAMES[family]} addresses; "
                           "give at most one a family")
        for address in mine:
            if not zone.holds(address):
                problems.error(zone.address_position,
                               f"{key} {address} is not in {networks_of(zone)}")


def networks_of(zone: Zone) -> str:
    """How a message names a zone's networks."""
    return f"the networks of zone {zone.name!r}" if zone.listed else "the internal networks"
