"""Warnings read off the plan: policy rules that can never decide a connection.

A policy rule is wholly shadowed when every nft rule it produced comes after
a rule of another policy rule, in the same chain, that already decides
everything it matches. The check works on the typed plan, so it sees what
the kernel will see (merged ports, named sets, schedules turned into UTC
days and hours). It only claims what it can prove: a match it cannot reason about
(`_never`) never counts as covering, so such a kind can only hide a warning,
never invent one. Every kind has its entry in MATCH_IMPLIES or
STATEMENT_ROLES (tests/test_kinds.py holds them to `plan.KINDS`).
"""

from __future__ import annotations

from typing import Callable

from .addresses import within
from .diagnostics import Collector, Diagnostic
from .plan import (AddressMatch, ConntrackMatch, DayMatch, HourMatch, IcmpTypeMatch, Match,
                   PortMatch, Rule, Ruleset)

POLICY_KINDS = ("publish", "outbound", "management")


def check(ruleset: Ruleset) -> list[Diagnostic]:
    problems = Collector()
    sets = _Sets(ruleset)
    shadowing: dict[tuple[str, str], set[str]] = {}
    unshadowed: set[tuple[str, str]] = set()
    first_rule: dict[tuple[str, str], Rule] = {}
    for chain in ruleset.chains:
        for index, rule in enumerate(chain.rules):
            key = (rule.origin.kind, rule.origin.name)
            if rule.origin.kind not in POLICY_KINDS:
                continue
            first_rule.setdefault(key, rule)
            cover = next((earlier for earlier in chain.rules[:index]
                          if earlier.origin.name != rule.origin.name
                          and _decides(earlier) and _covers(earlier, rule, sets)), None)
            if cover is None:
                unshadowed.add(key)
            else:
                shadowing.setdefault(key, set()).add(_describe(cover))
    for key, covers in shadowing.items():
        if key in unshadowed:
            continue
        origin = first_rule[key].origin
        verb = "matches" if len(covers) == 1 else "match"
        problems.warning(origin.position,
                         f"{_describe(first_rule[key], line=False)} never decides a connection: "
                         f"{' and '.join(sorted(covers))} before it already {verb} everything "
                         "it matches")
    return problems.diagnostics


def _describe(rule: Rule, line: bool = True) -> str:
    origin = rule.origin
    if origin.kind == "management":
        return origin.policy_name
    if origin.kind in POLICY_KINDS:
        where = f" (line {origin.position.line})" if line and origin.position else ""
        return f"{origin.kind} rule {origin.name!r}{where}"
    return f"the fixed rule {origin.name!r}"


def _decides(rule: Rule) -> bool:
    """A rule whose match ends the chain: a verdict or a translation, with
    nothing before it that may let the packet go on (a meter or a rate limit
    is true only for some packets)."""
    roles = [STATEMENT_ROLES[s.kind] for s in rule.statements]
    return "decides" in roles and all(role != "conditional" for role in roles)


def _covers(earlier: Rule, later: Rule, sets: _Sets) -> bool:
    """Everything `later` matches, `earlier` matches too: each of earlier's
    matches is implied by some match of later's."""
    return all(any(_implies(mine, theirs, sets) for mine in later.matches)
               for theirs in sorted(earlier.matches, key=_addresses_last))


def _addresses_last(match: Match) -> tuple[bool, bool]:
    """Ports and interfaces tell most rules apart, and cost nothing to compare;
    a single address next; a named set, which may hold many thousand, last."""
    is_address = isinstance(match, AddressMatch)
    return is_address, is_address and match.set_name is not None


class _Sets:
    """The ruleset's named sets, and which addresses hold which: the rules of
    a chain compare the same few sets over and over (each later rule against
    every earlier one), so each pair is worked out once (issue #22). A set
    written as defines another set includes (nested address sets) is held
    by it without looking at an address."""

    def __init__(self, ruleset: Ruleset):
        self.named = {nft_set.name: nft_set for nft_set in ruleset.sets}
        self.reached = _defines_reached(ruleset)
        self.held: dict[tuple, bool] = {}
        self.hashed: dict[str, frozenset] = {}      # a named set's intervals, for `within`

    def within(self, narrow: AddressMatch, wide: AddressMatch) -> bool:
        key = (narrow.set_name or narrow.intervals, wide.set_name or wide.intervals)
        if key not in self.held:
            self.held[key] = self._included(narrow, wide) or self._compared(narrow, wide)
        return self.held[key]

    def _included(self, narrow: AddressMatch, wide: AddressMatch) -> bool:
        """`narrow` is written as defines `wide` includes, and no address of its own."""
        written = self.named[narrow.set_name].written if narrow.set_name else None
        return (written is not None and not written.own and wide.set_name is not None
                and set(written.includes) <= self.reached.get(wide.set_name, set()))

    def _compared(self, narrow: AddressMatch, wide: AddressMatch) -> bool:
        outer = self._intervals(wide)
        if wide.set_name and wide.set_name not in self.hashed:
            self.hashed[wide.set_name] = frozenset(outer)
        return within(self._intervals(narrow), outer, self.hashed.get(wide.set_name))

    def _intervals(self, match: AddressMatch) -> tuple:
        return self.named[match.set_name].intervals if match.set_name else match.intervals


def _defines_reached(ruleset: Ruleset) -> dict[str, set[str]]:
    """Each named set's defines, with those they include in turn (each define
    comes after those it includes, so one pass closes them)."""
    closed: dict[str, set[str]] = {}
    for define in ruleset.defines:
        closed[define.name] = {define.name}.union(
            *(closed[name] for name in define.elements.includes))
    return {nft_set.name: set().union(*(closed[name] for name in nft_set.written.includes))
            for nft_set in ruleset.sets if nft_set.written is not None}


def _address(narrow: AddressMatch, wide: AddressMatch, sets: _Sets) -> bool:
    if (narrow.family, narrow.field, narrow.original) != (wide.family, wide.field, wide.original):
        return False
    if narrow.negated or wide.negated:      # only the same match is surely as wide
        return narrow == wide
    return ((narrow.set_name is not None and narrow.set_name == wide.set_name)
            or sets.within(narrow, wide))


def _port(narrow: PortMatch, wide: PortMatch, sets: _Sets) -> bool:
    return ((narrow.protocol, narrow.original) == (wide.protocol, wide.original)
            and wide.low <= narrow.low and narrow.high <= wide.high)


def _icmp(narrow: IcmpTypeMatch, wide: IcmpTypeMatch, sets: _Sets) -> bool:
    return narrow.protocol == wide.protocol and set(narrow.types) <= set(wide.types)


def _conntrack(narrow: ConntrackMatch, wide: ConntrackMatch, sets: _Sets) -> bool:
    return set(narrow.states) <= set(wide.states)


def _day(narrow: DayMatch, wide: DayMatch, sets: _Sets) -> bool:
    return set(narrow.days) <= set(wide.days)


def _hour(narrow: HourMatch, wide: HourMatch, sets: _Sets) -> bool:
    return wide.first <= narrow.first and narrow.last <= wide.last


def _equal(narrow: Match, wide: Match, sets: _Sets) -> bool:
    return narrow == wide


def _never(narrow: Match, wide: Match, sets: _Sets) -> bool:
    """A match shadowing cannot reason about: it never counts as covering."""
    return False


# Per match kind: does a match of that kind imply another of the same kind?
MATCH_IMPLIES: dict[str, Callable] = {
    "address": _address, "port": _port, "icmp": _icmp, "conntrack": _conntrack,
    "day": _day, "hour": _hour,
    "interface": _equal, "protocol": _equal, "hoplimit": _equal, "skuid": _equal,
    "ctstatus": _never, "unmetered": _never,
}
# Per statement kind: it decides (ends the chain), it goes on unconditionally,
# or it is true only for some packets (or jumps away), so the rule decides nothing.
STATEMENT_ROLES: dict[str, str] = {
    "verdict": "decides", "nat": "decides",
    "log": "goes on", "counter": "goes on",
    "rate_meter": "conditional", "count_meter": "conditional", "limit": "conditional",
    "redirect": "conditional", "masquerade": "conditional", "jump": "conditional",
    "dispatch": "conditional", "nat_map": "conditional",
}


def _implies(narrow: Match, wide: Match, sets: _Sets) -> bool:
    """Does matching `narrow` guarantee matching `wide`?"""
    return type(narrow) is type(wide) and MATCH_IMPLIES[wide.kind](narrow, wide, sets)
