"""What one nft transaction of apply or of a rollback does, as data: the
steps in order (a ruleset loaded, a table deleted, a run-time set given the
elements it held, counters given the counts they had), decided here from the
plan and the live listing, and printed by the text generator
(`generate.text.transaction_text`).

Counters are carried by declaring them with their counts: nft sets a
counter's count only when it creates the counter, and a later declaration
of the same counter in the same transaction changes nothing. `live`,
`with_whole_sets` and `renamed_from` read the listing these steps are
decided from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Union

from .. import nft
from ..listing import LiveCount, LiveElement, Listing
from ..plan import Ruleset
from ..state import State
from ..vocab import TABLE_FAMILY


@dataclass(frozen=True, slots=True)
class Load:
    """A ruleset's nft text, as compiled or as nft listed it."""
    text: str
    kind = "load"


@dataclass(frozen=True, slots=True)
class Compiled:
    """The compiled ruleset printed anew, its counters declared with `counts`."""
    ruleset: Ruleset
    counts: tuple[LiveCount, ...]
    kind = "compiled"

    @property
    def counted(self) -> dict[str, LiveCount]:
        return {count.name: count for count in self.counts}


@dataclass(frozen=True, slots=True)
class Counts:
    """The counters of `table` declared with `counts`, in the order a saved
    listing that declares them too has them, before it is loaded (after the
    table's delete): nft lists counters in the order they were made."""
    table: str
    counts: tuple[LiveCount, ...]
    kind = "counts"


@dataclass(frozen=True, slots=True)
class Delete:
    """A table deleted whether it exists or not (declared, then deleted)."""
    table: str
    kind = "delete"


@dataclass(frozen=True, slots=True)
class Carry:
    """Set `set_name` of `table` flushed and given `elements`."""
    table: str
    set_name: str
    elements: tuple[LiveElement, ...]
    kind = "carry"


Step = Union[Load, Compiled, Counts, Delete, Carry]


def carried_sets(ruleset: Ruleset) -> list[str]:
    """The sets of the plan whose elements operators add at run time
    (dynamic_block's: flags timeout). Meters, the sets the rules fill (flags
    dynamic), are not: nft lists a meter's elements but not the state the
    kernel keeps in each (the tokens a source has left, the connections it
    holds), and an element put back by `add element` has no limit of its
    own, so the meter rule would turn its source away at every retry, each
    retry renewing it. Only the plan can tell them apart: nft 1.0.6 lists
    `flags dynamic, timeout` as ["timeout"] and `flags dynamic` as none."""
    return [s.name for s in ruleset.sets if "timeout" in s.flags and "dynamic" not in s.flags]


def changing_sets(ruleset: Ruleset) -> set[str]:
    """The sets of the plan whose elements change by themselves: the
    operators' run-time sets and the meters."""
    return {s.name for s in ruleset.sets if {"timeout", "dynamic"} & set(s.flags)}


def live(netns: Optional[str]) -> Listing:
    """The ruleset as nft lists it tersely, set elements left out: a block
    list's hundreds of thousands are most of a listing, and a load never
    carries them (`with_whole_sets` adds those it does)."""
    return Listing.of(nft.list_ruleset(netns, terse=True))


def renamed_from(state: State, listing: Listing, table: str) -> Optional[str]:
    """The live table the last apply recorded, when `firewall.table` renamed it since."""
    recorded = (state.read("state") or {}).get("table")
    return recorded if recorded and recorded != table and listing.has_table(recorded) else None


def with_whole_sets(listing: Listing, netns: Optional[str],
                    carried: Iterable[tuple[str, Iterable[str]]]) -> Listing:
    """A terse `listing` with the sets named in `carried` ((table, names)
    pairs) listed whole: the run-time sets whose elements a load carries,
    or the sets a policy fills, whose addresses `diff` compares."""
    return listing.with_sets(nft.list_set(TABLE_FAMILY, table, name, netns)
                             for table, names in carried
                             for name in set(names) & set(listing.sets(table)))


def carried(listing: Listing, source: str, target: str, names: Iterable[str]) -> list[Carry]:
    """Each named set of table `target` given the elements the same set holds
    live in table `source`, with their remaining timeouts; an element about
    to expire is left out, and a set not in `source` is left as it is."""
    live = listing.sets(source)
    return [Carry(target, name, tuple(element for element in listing.elements(source, name)
                                      if element.expires is None or element.expires >= 1))
            for name in names if name in live]


def applying(text: str, ruleset: Ruleset, listing: Listing, old: Optional[str]) -> list[Step]:
    """The compiled ruleset with the counts of the live table (or of `old`)
    in its counters of the same names, the deletion of the renamed-away
    table `old`, and the run-time elements of the live table (or of `old`).
    Nothing counted yet: the compiled text as it is."""
    table = ruleset.table
    source = table if listing.has_table(table) else old
    counts = listing.counts(source, ruleset.counters) if source else ()
    steps: list[Step] = [Compiled(ruleset, counts) if counts else Load(text)]
    if old:
        steps.append(Delete(old))
    if source:
        steps += carried(listing, source, table, carried_sets(ruleset))
    return steps


def restoring(pending: dict, listing: Listing) -> list[Step]:
    """The steps that bring back the state recorded in `pending`: each
    recorded table deleted and its saved listing loaded again, with what the
    new table holds now in the counters of the same names and in the sets
    `confirm.arm` chose (its operators' sets, never its meters)."""
    previous = pending["previous"]
    steps: list[Step] = [Delete(name) for name in sorted(previous)]
    for name in sorted(previous):
        saved = previous[name]
        if saved["text"] is not None:
            counts = _counts_back(listing, pending["table"], saved.get("counters", {}))
            steps += [Counts(name, counts)] if counts else []
            steps.append(Load(saved["text"]))
            steps += carried(listing, pending["table"], name, saved["carried"])
    return steps


def _counts_back(listing: Listing, table: str, saved: dict) -> tuple[LiveCount, ...]:
    """Each counter `saved` (a saved table's, in its order), with the count
    the counter of the same name in `table` has now, or else the saved one."""
    now = listing.counters(table)
    return tuple(LiveCount(name, now[name]["packets"], now[name]["bytes"]) if name in now
                 else LiveCount(name, *count) for name, count in saved.items())
