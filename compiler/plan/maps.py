"""The statements of many publications (docs/ruleset.md, Many publications):
the maps `dispatch.dispatched` writes in place of a rule a pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..addresses import Address
from .ir import Origin, Statement


@dataclass(frozen=True, slots=True)
class DispatchEntry:
    """One element of a Dispatch: a publication pair's key and the chain of its address."""

    address: int
    protocol: str               # "tcp" or "udp"
    port: int
    target: str                 # a regular chain (hook None) of the same table


@dataclass(frozen=True, slots=True)
class Dispatch(Statement):
    """`ip daddr . meta l4proto . th dport vmap { 198.51.100.10 . tcp . 25 :
    jump prerouting_1, ... }`: one lookup sends a packet to the regular
    chain of its publication pair's address; none found, the rule does
    nothing. `original` keys on `ct original ip daddr`, the address before
    DNAT."""

    kind: ClassVar[str] = "dispatch"
    family: str
    original: bool
    entries: tuple[DispatchEntry, ...]


@dataclass(frozen=True, slots=True)
class NatMapEntry:
    """One element of a NatMap: a publication pair's key, the server it is
    translated to, and the publication it comes from (explain names it)."""

    address: int
    protocol: str               # "tcp" or "udp"
    port: int
    server: Address             # same family as the key, same port
    origin: Origin


@dataclass(frozen=True, slots=True)
class NatMap(Statement):
    """`dnat ip to ip daddr . meta l4proto . th dport map { 198.51.100.11 .
    tcp . 25 : 10.1.0.26, ... }`: the DNAT of every publication pair that
    needs no chain of its own (no sources, no hairpin, the same port), found
    with one lookup; none found, the rule does nothing."""

    kind: ClassVar[str] = "nat_map"
    family: str
    entries: tuple[NatMapEntry, ...]
