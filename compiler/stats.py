"""`mailpubc stats`: live packet and byte counts per policy rule, service
and family.

The plan names one counter per service and family of each policy rule with
an accept (`Origin.counter_name`, `plan.Ruleset.counters`); the counts come
from the live table's named counters, read through `mailpubc.nft`, so
nothing here parses nft text. A counter the plan declares but the table
lacks (not applied, or applied from another policy) has no counts (None),
never a made-up zero. `apply` and a rollback carry the counts over
(`deploy.transaction`), so they only grow, as Prometheus expects of a
counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import nft
from .columns import aligned
from .diagnostics import Position
from .listing import Listing
from .plan import CounterRef, Ruleset
from .vocab import FAMILY_LABELS


class TableMissing(Exception):
    """The policy's table is not in the kernel (exit 2)."""


@dataclass(frozen=True, slots=True)
class Count:
    kind: str
    rule: str
    service: Optional[str]         # None: a rule without one (management ssh)
    family: str                    # ipv4, ipv6, any (`vocab.FAMILY_LABELS`)
    counter: str                   # its name in the table (`Origin.counter_name`)
    position: Optional[Position]   # of the policy rule
    packets: Optional[int]         # None: the live table has no such counter
    bytes: Optional[int]

    def to_json(self) -> dict:
        return {"kind": self.kind, "rule": self.rule, "service": self.service,
                "family": self.family, "counter": self.counter,
                "position": str(self.position) if self.position else None,
                "packets": self.packets, "bytes": self.bytes}


def counts(ruleset: Ruleset, netns: Optional[str] = None) -> list[Count]:
    """One Count per counter the plan declares, in the order the rules come
    in the policy; TableMissing when the table is not loaded."""
    listing = nft.list_table(ruleset.table, netns=netns, terse=True)   # no set's elements
    if listing is None:
        raise TableMissing(f"table inet {ruleset.table} is not loaded"
                           + (f" in network namespace {netns}" if netns else "")
                           + "; apply the policy first")
    live = Listing.of(listing).counters(ruleset.table)
    found = []
    for name, (origin, family) in _counted_rules(ruleset).items():
        counter = live.get(name)
        found.append(Count(origin.kind, origin.name, origin.service, FAMILY_LABELS[family],
                           name, origin.position, counter["packets"] if counter else None,
                           counter["bytes"] if counter else None))
    return sorted(found, key=_policy_order)


def _counted_rules(ruleset: Ruleset) -> dict:
    """Each counter's name: the origin and family of the rules counting in it."""
    counted = {}
    for chain in ruleset.chains:
        for rule in chain.rules:
            for statement in rule.statements:
                if isinstance(statement, CounterRef):
                    counted.setdefault(statement.name, (rule.origin, statement.family))
    return {name: counted[name] for name in ruleset.counters}


def _policy_order(count: Count) -> tuple:
    """By place in the file, then kind and name (rules without a place last)."""
    place = (0, count.position.line, count.position.col) if count.position else (1, 0, 0)
    return place + (count.kind, count.rule, count.service or "", count.family)


def text(table: str, found: list[Count]) -> str:
    """An aligned table, then a note for each counter missing live."""
    header = ("kind", "rule", "service", "family", "position", "packets", "bytes")
    rows = [header] + [(c.kind, c.rule, c.service or "-", c.family, str(c.position or "-"),
                        "-" if c.packets is None else str(c.packets),
                        "-" if c.bytes is None else str(c.bytes)) for c in found]
    lines = aligned(rows, right=(5, 6))
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


def prometheus(table: str, found: list[Count]) -> str:
    """The counts in Prometheus's text exposition format (node-exporter's
    textfile collector reads it): two counters, packets and bytes accepted,
    a sample per table, kind, rule, service and family; a counter missing
    live has no sample."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily

    labels = ("table", "kind", "rule", "service", "family")
    families = {"packets": CounterMetricFamily(
                    "mailpubc_accepted_packets", "Packets accepted by a mailpubc policy rule "
                    "(new connections: the rest of a connection is accepted before them)",
                    labels=labels),
                "bytes": CounterMetricFamily(
                    "mailpubc_accepted_bytes", "Bytes of the packets accepted by a mailpubc "
                    "policy rule", labels=labels)}
    for c in found:
        if c.packets is None:
            continue
        values = (table, c.kind, c.rule, c.service or "", c.family)
        families["packets"].add_metric(values, c.packets)
        families["bytes"].add_metric(values, c.bytes)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Made(tuple(families.values())))
    return generate_latest(registry).decode()


@dataclass(frozen=True, slots=True, eq=False)
class _Made:
    """A collector of metric families already made: what a registry takes
    (by identity)."""
    families: tuple

    def collect(self):
        return iter(self.families)
