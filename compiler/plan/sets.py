"""The named sets and defines a ruleset declares, derived one way: from the
set names its finished chains use. An address set's nft set holds its
addresses of one family; a meter's set is made from its meter statement;
`firewall.block` and `dynamic_block` have their own.

An address set that two writers hold (a set a rule uses, or a define) gets
a `Define`, and the sets and defines holding it an `Elements` naming it
(`SetLayout.defined` decides, from the top down): the text writes each such set
once, the JSON writes every set flattened and merged, and both load to the
same listing (docs/ruleset.md, Sets).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Optional

from ..addresses import Interval, difference, merge
from ..model import CROWDSEC, OPERATOR, Policy
from ..vocab import FAMILIES, SET_SUFFIX
from .ir import AddressMatch, Chain, CountMeter, Define, Elements, NftSet, RateMeter

# dynamic_block's sets, by feeder: operators (fail2ban, nft by hand) add
# addresses and networks for a while; CrowdSec's firewall bouncer writes
# single addresses with no interval end, which an interval set would take as
# ADDRESS-255.255.255.255 (docs/integrations.md, CrowdSec)
DYNAMIC_FLAGS = {OPERATOR: ("interval", "timeout"), CROWDSEC: ("timeout",)}
METER_SIZE = 65535                          # sources a meter tracks at once
METER_TIMEOUT_MAX = 7 * 24 * 3600           # seconds: a source idle for a week starts afresh
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


def declared(policy: Policy, chains: tuple[Chain, ...]) -> tuple[tuple[NftSet, ...],
                                                                 tuple[Define, ...]]:
    """The sets the chains use, by name, each written through the defines the
    layout decides; the defines in order, each after those it includes."""
    catalogue, origins = _catalogue(policy)
    used: dict[str, NftSet] = {}
    for name, meter in _used_names(chains):
        used[name] = _meter_set(meter) if meter is not None else catalogue[name]
    layout = SetLayout(policy, {name: origins[name] for name in used if name in origins}, used)
    return layout.written()


def _used_names(chains: tuple[Chain, ...]) -> Iterator[tuple[str, object]]:
    """Each set name a rule uses, with the meter statement that fills it, if any."""
    for chain in chains:
        for rule in chain.rules:
            for part in rule.matches + rule.statements:
                if isinstance(part, (RateMeter, CountMeter)):
                    yield part.set_name, part
                elif isinstance(part, AddressMatch) and part.set_name:
                    yield part.set_name, None       # (an UnmeteredMatch's meter is declared)


def _catalogue(policy: Policy) -> tuple[dict[str, NftSet], dict[str, str]]:
    """Every set a rule may name, and the address set each named set is."""
    sets, origins = {}, {}
    for address_set in policy.address_sets:
        for family in FAMILIES:
            name = address_set.name + SET_SUFFIX[family]
            sets[name] = NftSet(name, family, address_set.addresses.family(family))
            origins[name] = address_set.name
    fw = policy.firewall
    for family in FAMILIES:
        if fw.block is not None and fw.block.set_name is None:
            name = "_block" + SET_SUFFIX[family]
            sets[name] = NftSet(name, family, fw.block.addresses.family(family))
        for dynamic in fw.dynamic_blocks:
            name = dynamic.name + SET_SUFFIX[family]
            sets[name] = NftSet(name, family, (), DYNAMIC_FLAGS[dynamic.feeder])
            origins.pop(name, None)
    return sets, origins


def _meter_set(meter) -> NftSet:
    """A meter's set: as many sources as METER_SIZE; a rate meter's source
    stays until a full burst is back (at most a week)."""
    if isinstance(meter, CountMeter):
        return NftSet(meter.set_name, meter.family, (), ("dynamic",), METER_SIZE)
    refill = -(-meter.burst // meter.count)       # units until a full burst is back
    timeout = min(UNIT_SECONDS[meter.unit] * max(1, refill), METER_TIMEOUT_MAX)
    return NftSet(meter.set_name, meter.family, (), ("dynamic", "timeout"), METER_SIZE, timeout)


class SetLayout:
    """How the used sets are written: which address sets get a define."""

    def __init__(self, policy: Policy, set_origins: dict[str, str], used: dict[str, NftSet]):
        self.address_sets = {s.name: s for s in policy.address_sets}
        self.set_origins = set_origins              # used nft set -> the address set it is
        self.used = used
        self.held: dict[str, frozenset[str]] = {}   # address set -> it and the sets it names

    def written(self) -> tuple[tuple[NftSet, ...], tuple[Define, ...]]:
        """The used sets, written through the defines of `defined`; the defines
        in order, each after those it includes."""
        order = self._named_first()
        defined = self.defined(order)
        defines = tuple(Define(set_name + SET_SUFFIX[family], family,
                               self._elements(set_name, family, defined)
                               or Elements((), self._flat(set_name, family)))
                        for family in FAMILIES for set_name in order
                        if (set_name, family) in defined)
        sets = []
        for name in sorted(self.used):
            nft_set, set_name = self.used[name], self.set_origins.get(name)
            if set_name is not None:
                written = (Elements((name,), ()) if (set_name, nft_set.family) in defined
                           else self._elements(set_name, nft_set.family, defined))
                nft_set = replace(nft_set, written=written)
            sets.append(nft_set)
        return tuple(sets), defines

    def defined(self, named_first: list[str]) -> set[tuple[str, str]]:
        """The address sets, per family, that the text would otherwise write
        more than once, so each gets a define. A set is written by the used
        set it is, and by each writer above it: a set that names it and has a
        define, or, through a set without one, whoever writes that set. Two
        writers or more: a define. Decided from the top down, as a set's
        define keeps the sets below it from its writers."""
        parents: dict[str, list[str]] = {}
        for address_set in self.address_sets.values():
            for named in address_set.includes:
                parents.setdefault(named, []).append(address_set.name)
        used = {(set_name, self.used[name].family)
                for name, set_name in self.set_origins.items()}
        defined: set[tuple[str, str]] = set()
        for family in FAMILIES:
            writers: dict[str, set[str]] = {}
            for set_name in reversed(named_first):
                found = {set_name} if (set_name, family) in used else set()
                for parent in parents.get(set_name, ()):
                    found |= {parent} if (parent, family) in defined else writers[parent]
                writers[set_name] = found
                if len(found) > 1 and self._flat(set_name, family):
                    defined.add((set_name, family))
        return defined

    def _elements(self, set_name: str, family: str, defined: set) -> Optional[Elements]:
        """A set written as the defines nearest below it, and its addresses
        none of them holds; None when no set below it has a define."""
        nearest, seen, waiting = [], {set_name}, [set_name]
        while waiting:
            for named in self.address_sets[waiting.pop()].includes:
                if named in seen or not self._flat(named, family):
                    continue
                seen.add(named)
                (nearest if (named, family) in defined else waiting).append(named)
        nearest = sorted(name for name in nearest       # not those a nearer define holds
                         if not any(name != other and name in self._held(other)
                                    for other in nearest))
        if not nearest:
            return None
        held = [self._flat(name, family) for name in nearest]
        own = difference(self._flat(set_name, family),
                         held[0] if len(held) == 1 else merge(i for part in held for i in part))
        return Elements(tuple(name + SET_SUFFIX[family] for name in nearest), own)

    def _held(self, set_name: str) -> frozenset[str]:
        """The address set and every set it names, however deep."""
        if set_name not in self.held:
            seen, waiting = {set_name}, [set_name]
            while waiting:
                for named in self.address_sets[waiting.pop()].includes:
                    if named not in seen:
                        seen.add(named)
                        waiting.append(named)
            self.held[set_name] = frozenset(seen)
        return self.held[set_name]

    def _named_first(self) -> list[str]:
        """Every address set after the sets it names (a define must come after
        those it includes); by name otherwise, so that the output is stable."""
        order, placed = [], set()
        for start in sorted(self.address_sets):
            if start in placed:
                continue
            placed.add(start)
            path = [(start, iter(self.address_sets[start].includes))]
            while path:
                name, names = path[-1]
                named = next(names, None)
                if named is None:
                    path.pop()
                    order.append(name)
                elif named not in placed:
                    placed.add(named)
                    path.append((named, iter(self.address_sets[named].includes)))
        return order

    def _flat(self, set_name: str, family: str) -> tuple[Interval, ...]:
        return self.address_sets[set_name].addresses.family(family)
