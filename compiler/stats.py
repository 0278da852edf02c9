"""`mailpubc stats`: live packet and byte counts per policy rule.

The plan names one counter per policy rule with an accept (`KIND_NAME`,
`plan.Ruleset.counters`); the counts come from the live table's named
counters, read through `mailpubc.nft`, so nothing here parses nft text.
A counter the plan declares but the table lacks (not applied, or applied
from another policy) has no counts (None), never a made-up zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import nft
from .columns import aligned
from .diagnostics import Position
from .listing import Listing
from .plan import CounterRef, Ruleset


class TableMissing(Exception):
    """The policy's table is not in the kernel (exit 2)."""


@dataclass(frozen=True, slots=True)
class Count:
    kind: str
    rule: str
    counter: str                   # its name in the table (`Origin.counter_name`)
    position: Optional[Position]   # of the policy rule
    packets: Optional[int]         # None: the live table has no such counter
    bytes: Optional[int]

    def to_json(self) -> dict:
        return {"kind": self.kind, "rule": self.rule,
                "position": str(self.position) if self.position else None,
                "packets": self.packets, "bytes": self.bytes}


def counts(ruleset: Ruleset, netns: Optional[str] = None) -> list[Count]:
    """One Count per counter the plan declares, in the order the rules come
    in the policy; TableMissing when the table is not loaded."""
    listing = nft.list_table(ruleset.table, netns=netns)
    if listing is None:
        raise TableMissing(f"table inet {ruleset.table} is not loaded"
                           + (f" in network namespace {netns}" if netns else "")
                           + "; apply the policy first")
    live = Listing.of(listing).counters(ruleset.table)
    origins = {}
    for chain in ruleset.chains:
        for rule in chain.rules:
            for statement in rule.statements:
                if isinstance(statement, CounterRef):
                    origins.setdefault(statement.name, rule.origin)
    found = []
    for name in ruleset.counters:
        origin, counter = origins[name], live.get(name)
        found.append(Count(origin.kind, origin.name, name, origin.position,
                           counter["packets"] if counter else None,
                           counter["bytes"] if counter else None))
    return sorted(found, key=_policy_order)


def _policy_order(count: Count) -> tuple:
    """By place in the file, then kind and name (rules without a place last)."""
    place = (0, count.position.line, count.position.col) if count.position else (1, 0, 0)
    return place + (count.kind, count.rule)


def text(table: str, found: list[Count]) -> str:
    """An aligned table, then a note for each counter missing live."""
    header = ("kind", "rule", "position", "packets", "bytes")
    rows = [header] + [(c.kind, c.rule, str(c.position or "-"),
                        "-" if c.packets is None else str(c.packets),
                        "-" if c.bytes is None else str(c.bytes)) for c in found]
    lines = aligned(rows, right=(3, 4))
    lines += [f"note: {c.kind} {c.rule}: table inet {table} has no counter "
              f"{c.counter} (applied from another policy?)"
              for c in found if c.packets is None]
    return "\n".join(lines) + "\n"


def mismatch(table: str, source: str) -> str:
    """The note for a live table that is not what the policy compiles to: its
    counters may share names with the policy's and count other rules."""
    return (f"table inet {table} is not what {source} compiles to: it was applied from "
            f"another policy, or {source} changed since (`mailpubc diff` shows how); "
            "a counter of the same name may count another rule")


def to_json(table: str, found: list[Count], matches: bool) -> dict:
    """`matches`: the live table is what the policy compiles to (else see `mismatch`)."""
    return {"table": table, "matches_policy": matches, "rules": [c.to_json() for c in found]}
