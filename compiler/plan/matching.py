"""How the rule builders match addresses and ports: one place each, shared
by publish, outbound and management."""

from __future__ import annotations

import functools
from typing import Iterator, Optional

from ..addresses import Address, subtract
from ..model import AddressRef, Service, family_of
from ..vocab import ECHO_PROTOCOL, ECHO_REQUEST, ICMP_PROTOCOLS, SET_SUFFIX, PortRange
from .ir import AddressMatch, IcmpTypeMatch, Match, PortMatch


def address_match(ref: AddressRef, family: str, field_: str) -> Optional[AddressMatch]:
    """How a rule matches `ref` in `family`: its named set (`sets.declared`
    declares it), or its intervals inline; None when it has no such addresses."""
    intervals = ref.addresses.family(family)
    if not intervals:
        return None
    if ref.set_name is not None:
        return AddressMatch(family, field_, set_name=ref.set_name + SET_SUFFIX[family])
    return AddressMatch(family, field_, intervals)


@functools.lru_cache(maxsize=4096)
def single(address: Address, field_: str, original: bool = False) -> AddressMatch:
    """One address as a match, kept: each service of a publication matches
    the same addresses (issue #22: thousands of publications)."""
    value = int(address)
    return AddressMatch(family_of(address), field_, ((value, value),), original=original)


def allowed(sources: AddressRef, family: str) -> tuple[AddressMatch, ...]:
    """allow_from as a source match in `family`; none for any (semantics
    has refused an allow_from with no address of the publication's family)."""
    if sources.any:
        return ()
    return (address_match(sources, family, "saddr"),)


def served(service: Service, dport: Match) -> Match:
    """What the server receives for a published port matched by `dport`: the
    same, or its server_port (resolve allows one only on a single tcp/udp port)."""
    if service.server_port is None:
        return dport
    return PortMatch(dport.protocol, service.server_port, service.server_port)


def ports(services: tuple[Service, ...]) -> Iterator[tuple[Service, PortRange]]:
    """(service, port) pairs in policy order, each port of a rule once, so a
    published port is translated and accepted by one rule: a port belongs to
    the first service that names it, and a later service keeps only the parts
    of its ranges no earlier one covers (smtp tcp/25, then tcp/20-30, gives
    25, then 20-24 and 26-30)."""
    covered: dict[str, list[tuple[int, int]]] = {"tcp": [], "udp": [], ECHO_PROTOCOL: []}
    for service in services:
        for port in service.ports:
            taken = covered[port.protocol]
            if not any(low <= port.high and port.low <= high for low, high in taken):
                yield service, port         # the common case: nothing earlier covers it
            else:
                for low, high in subtract([(port.low, port.high)], taken):
                    yield service, PortRange(port.protocol, low, high)
            taken.append((port.low, port.high))


def dports(port: PortRange, families) -> list[Match]:
    """What a rule matches for one port of a service: the port, or for ping
    the echo request of each of `families`."""
    if port.protocol == ECHO_PROTOCOL:
        return [IcmpTypeMatch(ICMP_PROTOCOLS[family], (ECHO_REQUEST,)) for family in families]
    return [PortMatch(port.protocol, port.low, port.high)]


def original_port(port: PortRange) -> tuple[Match, ...]:
    """The port before DNAT, which a forward accept pairs with its address
    (an echo request keeps its type: nothing to pair)."""
    if port.protocol == ECHO_PROTOCOL:
        return ()
    return (PortMatch(port.protocol, port.low, port.high, original=True),)
