"""Checks of publications: one external address and port published once,
a translation per port, who may connect, routed servers, hairpin."""

from __future__ import annotations

from typing import Optional

from ..diagnostics import Collector, line_of
from ..model import Addresses, Policy, Publish, Service, family_of
from ..vocab import FAMILIES, FAMILY_NAMES, PortRange



def publish_conflicts(policy: Policy, problems: Collector) -> None:
    """One external address, protocol and port can be published by one rule
    only. Services of one rule that share a port are merged (the plan lists
    each port of a rule once), so only other rules count. Claims are kept by
    address and protocol, single ports hashed, so a thousand publications
    cost a thousand lookups, not a million comparisons; a conflict names the
    earliest claim it meets, as a pairwise scan would."""
    singles: dict[tuple, dict[int, tuple[int, Publish]]] = {}     # port -> (order, rule)
    ranges: dict[tuple, list[tuple[int, PortRange, Publish]]] = {}
    order = 0
    for rule in policy.publish:
        if rule.external_address is None:
            continue
        for service in rule.services:
            for port in service.ports:
                key = (rule.external_address, port.protocol)
                earlier = _claims(singles.get(key, {}), ranges.get(key, []), port, rule)
                if earlier is not None:
                    problems.error(rule.position,
                                   f"publish rule {rule.name!r} claims {rule.external_address} "
                                   f"{port} ({service.name}), already published by rule "
                                   f"{earlier.name!r} ({line_of(earlier.position)}); "
                                   "an external address and port can be published only once")
                if port.low == port.high:
                    singles.setdefault(key, {}).setdefault(port.low, (order, rule))
                else:
                    ranges.setdefault(key, []).append((order, port, rule))
                order += 1


def _claims(singles: dict, ranges: list, port: PortRange, rule: Publish) -> Optional[Publish]:
    """The earliest other rule whose claim overlaps `port`, or None."""
    found = [(order, other) for order, claimed, other in ranges
             if other is not rule and port.overlaps(claimed)]
    numbers = ([port.low] if port.low == port.high
               else [n for n in singles if port.low <= n <= port.high])
    found += [singles[n] for n in numbers if n in singles and singles[n][1] is not rule]
    return min(found, key=lambda claim: claim[0])[1] if found else None


def routed(policy: Policy, problems: Collector) -> None:
    """A server in a routed network is published without an external
    address (in its family), every other server with one."""
    for rule in policy.publish:
        if rule.routed and rule.external_address is not None:
            problems.error(rule.external_position,
                           f"server {rule.server} is in a routed network, so publish rule "
                           f"{rule.name!r} takes no {FAMILY_NAMES[rule.family]} "
                           "external_address: clients reach the server at its own address"
                           if dual(policy, rule) else
                           f"server {rule.server} is in a routed network, so publish rule "
                           f"{rule.name!r} takes no external_address: clients reach the "
                           "server at its own address")
        elif not rule.routed and rule.external_address is None:
            what = "the firewall" if rule.server is None else f"server {rule.server}"
            which = f"an {FAMILY_NAMES[rule.family]}" if dual(policy, rule) else "an"
            problems.error(rule.position,
                           f"publish rule {rule.name!r} needs {which} external_address: {what} "
                           "is not in a routed network (firewall.internal.routed)")


def dual(policy: Policy, rule) -> bool:
    """Is `rule` one family of a dual-stack publication?"""
    return any(other.name == rule.name and other is not rule for other in policy.publish)


def publish_translations(policy: Policy, problems: Collector) -> None:
    """Services of one publication that share an external port merge only
    when they send it to the same server port; otherwise one of them would
    silently lose its translation."""
    for rule in policy.publish:
        for i, service in enumerate(rule.services):
            for earlier in rule.services[:i]:
                # server_port None is each port to itself; resolve made a
                # server_port equal to the service's own port None
                if service.server_port == earlier.server_port:
                    continue
                clash = next((PortRange(port.protocol, max(port.low, other.low),
                                        min(port.high, other.high))
                              for port in service.ports for other in earlier.ports
                              if port.overlaps(other)), None)
                if clash is not None:
                    problems.error(service.position,
                                   f"publish rule {rule.name!r}: {service.name} and "
                                   f"{earlier.name} ({line_of(earlier.position)}) both "
                                   f"publish {rule.published_at()} {clash} but translate it "
                                   "to different server ports")
                    break


def allow_from_families(policy: Policy, problems: Collector) -> None:
    for rule in policy.publish:
        if rule.published_at() is None:     # no external_address: routed reports it
            continue
        family = family_of(rule.published_at())
        for sources in dict.fromkeys(service.allow_from for service in rule.services):
            if sources is not None and not sources.any and not sources.addresses.family(family):
                problems.error(sources.position,
                               f"publish rule {rule.name!r}: allow_from has no "
                               f"{FAMILY_NAMES[family]} address, but the publication is "
                               f"{FAMILY_NAMES[family]} ({rule.published_at()}): "
                               "nobody could connect")


def hairpin(policy: Policy, problems: Collector) -> None:
    """Hairpin translates internal clients' connections to an internal server;
    the firewall's own services need no translation to be reached from
    inside, nor does a routed server (outbound rules reach it)."""
    for rule in policy.publish:
        if not rule.hairpin or rule.part != 0 and rule.server is None:
            continue
        if rule.server is None:
            problems.error(rule.hairpin_position,
                           f"publish rule {rule.name!r}: hairpin needs an internal server; "
                           "internal clients reach the firewall's own (localhost) services "
                           "on the external address without it")
            continue
        translated = [part for part in policy.publish
                      if part.name == rule.name and part.external_address is not None]
        if not translated:
            if rule.part == 0:
                problems.error(rule.hairpin_position,
                               f"publish rule {rule.name!r}: hairpin needs an external_address; "
                               "internal clients reach a routed server at its own address")
            continue
        if rule.external_address is None:
            continue
        family = rule.family
        clients = hairpin_clients(policy, rule)
        if not any(clients(service).family(family) for service in rule.services):
            problems.error(rule.hairpin_position,
                           f"publish rule {rule.name!r}: hairpin, but no {FAMILY_NAMES[family]} "
                           "address of allow_from is in the internal networks"
                           + ("" if len(policy.firewall.zones) == 1
                              else " of the hairpin zones"))


def hairpin_clients(policy: Policy, rule):
    """The hairpin clients of one service of `rule`: the hairpin zones'
    networks, within the service's allow_from."""
    networks = Addresses.of(*([i for zone in policy.firewall.zones if zone.name in rule.hairpin
                               for i in zone.networks.family(family)] for family in FAMILIES))

    def clients(service: Service) -> Addresses:
        sources = service.allow_from or rule.allow_from
        return networks if sources.any else networks.intersection(sources.addresses)
    return clients


def hairpin_allow_from(policy: Policy, problems: Collector) -> None:
    """A zone named in allow_from whose clients hairpin does not admit can
    connect only if it were outside: probably a missing hairpin zone."""
    for rule in policy.publish:
        if rule.part != 0 or rule.server is None:
            continue
        for sources in dict.fromkeys(service.allow_from for service in rule.services):
            for zone in (sources.zones if sources else ()):
                if zone not in rule.hairpin:
                    problems.warning(sources.position,
                                     f"publish rule {rule.name!r}: allow_from names zone "
                                     f"{zone!r}, but hairpin does not admit it, so its clients "
                                     "cannot use the publication")
