"""The rules of `publish`: DNAT with its paired forward accept for a server
behind the firewall, an input accept (after a redirect, for another port)
for the firewall itself, a forward filter for a routed server, and hairpin
for internal clients. Every rule matches allow_from's sources, so others
are not translated."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Firewall, Policy, Publish, Service, Zone, family_of
from ..vocab import PortRange
from .fixed import ACCEPT
from .ir import (AddressMatch, ConntrackStatusMatch, InterfaceMatch, Masquerade, Nat, Origin,
                 Redirect, Rule)
from .matching import allowed, dports, original_port, ports, served, single


@dataclass
class Published:
    """The rules of every publication, by the chain that holds them."""
    prerouting: list[Rule] = field(default_factory=list)
    forward: list[Rule] = field(default_factory=list)
    input: list[Rule] = field(default_factory=list)


def publishing(policy: Policy) -> Published:
    found = Published()
    for rule in policy.publish:
        for service, port in ports(rule.services):
            sources = allowed(service.allow_from or rule.allow_from, rule.family)
            origin = Origin("publish", rule.name, service.name, rule.position)
            if rule.external_address is None:
                found.forward.append(_routed(policy.firewall, rule, port, origin, sources))
            elif rule.server is None:
                _on_firewall(found, rule, service, port, origin, sources)
            else:
                _translated(found, policy.firewall, rule, service, port, origin, sources)
    return found


def _on_firewall(found: Published, rule: Publish, service: Service, port: PortRange,
                 origin: Origin, sources: tuple) -> None:
    """A publication on the firewall itself: accepted in input, after a
    redirect when the service listens on another port."""
    external = single(rule.external_address, "daddr")
    dport, = dports(port, (family_of(rule.external_address),))
    if service.server_port is None:
        found.input.append(Rule(origin, (*sources, external, dport), (ACCEPT,)))
        return
    original = (single(rule.external_address, "daddr", original=True), *original_port(port))
    found.prerouting.append(Rule(origin, (*sources, external, dport),
                                 (Redirect(service.server_port),)))
    found.input.append(Rule(origin, (*sources, served(service, dport), *original), (ACCEPT,)))


def _translated(found: Published, fw: Firewall, rule: Publish, service: Service,
                port: PortRange, origin: Origin, sources: tuple) -> None:
    """A server behind the firewall: DNAT in prerouting, and the forward
    accept of the translated connection paired with its original address."""
    external = single(rule.external_address, "daddr")
    dport, = dports(port, (family_of(rule.external_address),))
    original = (single(rule.external_address, "daddr", original=True), *original_port(port))
    found.prerouting.append(Rule(
        origin, (InterfaceMatch("iif", fw.external_interface), *sources, external, dport),
        (Nat("dnat", family_of(rule.server), rule.server, service.server_port),)))
    found.forward.append(Rule(
        origin, (InterfaceMatch("oif", _server_side(fw, rule)), *sources,
                 single(rule.server, "daddr"), served(service, dport), *original),
        (ACCEPT,)))


def _routed(fw: Firewall, rule: Publish, port: PortRange, origin: Origin,
            sources: tuple) -> Rule:
    """A server in a routed network is reached at its own address: a
    forward filter from outside to it, without translation."""
    dport, = dports(port, (family_of(rule.server),))
    return Rule(origin, (InterfaceMatch("iif", fw.external_interface),
                         InterfaceMatch("oif", _server_side(fw, rule)), *sources,
                         single(rule.server, "daddr"), dport), (ACCEPT,))


def _server_side(fw: Firewall, rule: Publish) -> str:
    """The interface of the zone that holds the server (semantics has
    refused a server in no zone)."""
    return fw.zone_named(rule.zone).interface


def hairpin(policy: Policy) -> tuple[list[Rule], list[Rule]]:
    """For hairpin publications, the DNAT of each hairpin zone's clients
    (from its interface, in its networks and the service's allow_from) and,
    for clients in the server's own zone only, the source translation that
    brings the server's replies back through the firewall; a client of
    another zone keeps its address (the firewall, its gateway, sees the
    replies anyway). Both match the incoming interface: a packet from
    outside with a forged internal source must never be translated into
    one from the firewall itself."""
    fw = policy.firewall
    prerouting, postrouting, seen = [], [], set()
    for rule in policy.publish:
        if rule.server is None or rule.external_address is None:
            continue
        for zone in (z for z in fw.zones if z.name in rule.hairpin):
            for service, port in ports(rule.services):
                sources = service.allow_from or rule.allow_from
                clients = zone.networks.family(rule.family) if sources.any else (
                    zone.networks.intersection(sources.addresses).family(rule.family))
                if not clients:
                    continue
                origin = Origin("hairpin", rule.name, service.name, rule.position)
                dport, = dports(port, (rule.family,))
                prerouting.append(Rule(
                    origin, (InterfaceMatch("iif", zone.interface),
                             AddressMatch(rule.family, "saddr", clients),
                             single(rule.external_address, "daddr"), dport),
                    (Nat("dnat", rule.family, rule.server, service.server_port),)))
                key = (rule.server, served(service, dport))
                if zone.name == rule.zone and key not in seen:
                    seen.add(key)
                    postrouting.append(_hairpin_snat(zone, rule, origin, served(service, dport)))
    return prerouting, postrouting


def _hairpin_snat(zone: Zone, rule: Publish, origin: Origin, port) -> Rule:
    """A client in the server's own zone would get the server's replies
    straight from the server, past the firewall's DNAT: it is made the
    firewall's address on that zone."""
    internal = zone.address(rule.family)
    return Rule(origin, (InterfaceMatch("iif", zone.interface),
                         InterfaceMatch("oif", zone.interface),
                         ConntrackStatusMatch("dnat"),
                         AddressMatch(rule.family, "saddr", zone.networks.family(rule.family)),
                         single(rule.server, "daddr"), port),
                (Masquerade() if internal is None else Nat("snat", rule.family, internal),))
