"""`diff`: what `apply` would change, as nft lists both sides (which
reapply asks too); and whether the live table has a policy's rules (stats)."""

from __future__ import annotations

import difflib
import json
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Iterable, Optional

from .. import nft
from ..generate.text import generate
from ..listing import Listing
from ..state import State
from .transaction import Early, changing_sets, live, renamed_from, with_whole_sets

if TYPE_CHECKING:
    from ..api import Result


class Difference:
    """Whether the live tables are the policy's, the unified diff of their
    readable listings ("" when same), and those listings (`before`, `after`).
    The listings of an unchanged table are written only when asked: nft
    prints them after a load into a scratch namespace, which at block-list
    scale costs as much as the comparison itself."""

    def __init__(self, same: bool, before: list, after: list, source: str, where: str):
        self.same, self._entries = same, (before, after)
        self.text = "" if same else "".join(difflib.unified_diff(
            self.before.splitlines(keepends=True), self.after.splitlines(keepends=True),
            fromfile=where, tofile=source))

    @cached_property
    def before(self) -> str:
        return self.after if self.same else _readable(self._entries[0])

    @cached_property
    def after(self) -> str:
        return _readable(self._entries[1])


def normalise(listing: Listing, tables: Iterable[str], changing: Iterable[str]) -> list:
    """The listing's entries of our `tables`, without what changes by itself:
    handles, counter values, the elements of the `changing` sets
    (`changing_sets`: a meter's elements come and go with the clients, and
    nft's listing cannot tell a meter from a set the policy fills)."""
    changing = set(changing)
    kept = []
    for entry in listing.owned(tables):
        (kind, value), = entry.items()
        value = {k: v for k, v in value.items() if k != "handle"}
        if kind == "rule":      # anonymous counters live in rules only: sets are left unwalked
            value = _zero_counters(value)
        if kind == "set" and value["name"] in changing:
            value.pop("elem", None)
        if kind == "counter":
            value.update(packets=0, bytes=0)
        kept.append({kind: value})
    return kept


def _zero_counters(value):
    if isinstance(value, dict):
        return {k: ({"packets": 0, "bytes": 0} if k == "counter" and isinstance(v, dict)
                    and "packets" in v else _zero_counters(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_zero_counters(v) for v in value]
    return value


def _readable(entries: list) -> str:
    """Normalised entries as nft lists them: loaded into a scratch namespace."""
    if not entries:
        return ""

    def listed() -> str:
        nft.load(json.dumps({"nftables": entries}), json=True)
        return nft.list_text("ruleset")
    return nft.scratch(listed)


def diff(result: Result, netns: Optional[str] = None,
         early: Optional[Early] = None) -> Difference:
    """What `apply` would change: the live table (and a recorded table a
    rename would delete) against the policy's, as nft lists them; `early`:
    its sets as `listed_early` began listing them before the compile."""
    ruleset = result.or_raise().ruleset
    where = f"live (netns {netns})" if netns else "live"
    same = _unchanged_listing(result, netns, early)
    if same is not None:
        kept = normalise(same, [ruleset.table], changing_sets(ruleset))
        return Difference(True, kept, kept, result.source, where)
    listing = Listing.of(nft.list_ruleset(netns))
    renamed = renamed_from(State.of(netns), listing, ruleset.table)
    before, after = _compared(result, listing, [ruleset.table] + ([renamed] if renamed else []))
    return Difference(before == after, before, after, result.source, where)


def unchanged(result: Result, netns: Optional[str] = None,
              early: Optional[Early] = None) -> bool:
    """Whether the policy's table is live as it is and no rename is pending,
    found without loading the compiled side's elements (`_unchanged_listing`).
    A False may also be a set holding the same addresses written as nft
    would not write them; applying the policy again then changes nothing,
    which is all `reapply` needs to know."""
    return _unchanged_listing(result.or_raise(), netns, early) is not None


def _unchanged_listing(result: Result, netns: Optional[str],
                       early: Optional[Early]) -> Optional[Listing]:
    """The live listing (terse, with the sets the policy fills listed whole)
    when the policy's table is live as it is: found without listing the
    run-time sets or loading and listing the compiled side's elements (a
    block list's hundreds of thousands: issue #22), from the rules and
    declarations as `rules_match` finds them and each set the policy fills
    holding the same addresses. None otherwise, or while a rename is pending;
    `diff` then shows the difference by the full comparison (`_compared`)."""
    ruleset = result.ruleset
    terse = live(netns)
    if renamed_from(State.of(netns), terse, ruleset.table):
        return None
    changing = changing_sets(ruleset)
    fixed = [nft_set for nft_set in ruleset.sets if nft_set.name not in changing]
    filled = with_whole_sets(terse, netns, [(ruleset.table, [s.name for s in fixed])], early)
    listed = filled.sets(ruleset.table)
    same = (all(s.name in listed and filled.addresses(ruleset.table, s.name) == s.intervals
                for s in fixed) and rules_match(result, netns))
    return filled if same else None


def _compared(result: Result, live: Listing, tables: Iterable[str]) -> tuple[list, list]:
    """The live entries of `tables` and the compiled ruleset's (loaded in a
    scratch namespace), both as `diff` compares them."""
    def candidate() -> Listing:
        nft.load(result.text)
        return Listing.of(nft.list_ruleset())
    changing = changing_sets(result.ruleset)
    return (normalise(live, tables, changing),
            normalise(nft.scratch(candidate), [result.ruleset.table], changing))


def rules_match(result: Result, netns: Optional[str] = None) -> bool:
    """Whether the live table has the policy's chains, rules, sets and
    counters, whatever the sets hold: what `stats` needs to know (a counter
    counts the same rule), without listing or loading a block list's
    hundreds of thousands of elements (nft's terse listing, and the plan
    written with its sets empty)."""
    ruleset = result.or_raise().ruleset
    empty = replace(ruleset, defines=(), sets=tuple(
        replace(nft_set, intervals=(), written=None) for nft_set in ruleset.sets))

    def candidate() -> Listing:
        nft.load(generate(empty))
        return Listing.of(nft.list_ruleset(terse=True))
    live = Listing.of(nft.list_ruleset(netns, terse=True))
    return (normalise(live, [ruleset.table], ()) ==
            normalise(nft.scratch(candidate), [ruleset.table], ()))
