"""What one nft transaction of apply or of a rollback does, as data: the
steps in order (a ruleset loaded, a table deleted, a run-time set given the
elements it held, counters given the counts they had), decided here from the
plan and the live listing, and printed by the text generator
(`generate.text.transaction_text`).

Counters are carried by declaring them with their counts: nft sets a
counter's count only when it creates the counter, and a later declaration
of the same counter in the same transaction changes nothing. `live`,
`with_whole_sets` and `renamed_from` read the listing these steps are
decided from; `listed_early` starts listing a block list's sets before a
compile, for `diff` and `reapply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Union

from .. import nft
from ..generate import name_ok
from ..listing import LiveCount, LiveElement, Listing
from ..plan import Ruleset
from ..state import State, StateError
from ..vocab import TABLE_FAMILY

if TYPE_CHECKING:
    from concurrent.futures import Future


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
                    carried: Iterable[tuple[str, Iterable[str]]],
                    early: Optional[Early] = None) -> Listing:
    """A terse `listing` with the sets named in `carried` ((table, names)
    pairs) listed whole: the run-time sets whose elements a load carries,
    or the sets a policy fills, whose addresses `diff` compares; those
    `early` listed already taken from there."""
    ready = {} if early is None else early.bodies()
    return listing.with_sets(ready.get((table, name))
                             or nft.list_set(TABLE_FAMILY, table, name, netns)
                             for table, names in carried
                             for name in set(names) & set(listing.sets(table)))


# A set of more intervals than this takes nft longer to list than a child
# process to list it costs (about 7 µs an element, against 8 ms a child).
LISTED_EARLY_FROM = 1000


@dataclass(frozen=True, slots=True)
class Early:
    """Sets being listed whole while a policy compiles (`listed_early`)."""
    table: str
    listing: Future

    def bodies(self) -> dict[tuple[str, str], dict]:
        """The sets listed, by (table, name); none when the listing failed
        (whoever needs a set then lists it, and meets the failure there)."""
        try:
            return {(self.table, name): body for name, body in self.listing.result().items()}
        except Exception:
            return {}


def large_sets(ruleset: Ruleset) -> list[str]:
    """The plan's sets worth listing ahead (`listed_early`), which apply
    records: those it fills with more than LISTED_EARLY_FROM intervals."""
    changing = changing_sets(ruleset)
    return [s.name for s in ruleset.sets
            if s.name not in changing and len(s.intervals) > LISTED_EARLY_FROM]


def listed_early(netns: Optional[str]) -> Optional[Early]:
    """The large sets the last apply recorded (`large_sets`: a block list,
    never the run-time sets), listed whole from now on, while the policy
    compiles: `diff` and `reapply` compare them after (`with_whole_sets`),
    and a block list takes nft about as long to list as it takes to
    compile. None when none is recorded."""
    try:
        recorded = State.of(netns).read("state") or {}
    except StateError:
        return None         # the command says why, where it needs the state
    table, names = recorded.get("table"), recorded.get("large_sets") or []
    names = [name for name in names if isinstance(name, str) and name_ok(name)]
    started = (nft.listing_sets(TABLE_FAMILY, table, names, netns)
               if isinstance(table, str) and name_ok(table) and names else None)
    return None if started is None else Early(table, started)


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
