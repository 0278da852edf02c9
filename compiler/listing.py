"""What nft lists (`nft -j list ruleset`), read once: every question deploy,
stats and the boot ask of a listing is a method here, so picking one table's
entries out of the whole ruleset is written in one place (`owner`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Union

from .addresses import BITS, Interval, host_mask, merge, parse_int
from .vocab import TABLE_FAMILY

# A listed element as nft printed it: an address, ADDRESS/LENGTH, or (low,
# high) for a range; each address checked to hold only an address's
# characters, since it goes back into nft text (`generate.text`). Not
# parsed further: a rollback carries tens of thousands (issue #22).
Value = Union[str, tuple]
_ADDRESS = re.compile(r"[0-9A-Fa-f.:]{2,45}")


def owner(entry: dict) -> tuple:
    """(family, table) of a listed table, or of the table a chain, set, rule... is in."""
    (kind, value), = entry.items()
    return value.get("family"), value.get("name" if kind == "table" else "table")


@dataclass(frozen=True, slots=True)
class LiveElement:
    """One element of a listed set: its address, network or range, and, in a
    timeout set, the timeout it was given and the seconds it has left."""
    value: Value
    timeout: Optional[int] = None
    expires: Optional[int] = None


@dataclass(frozen=True, slots=True)
class LiveCount:
    """A named counter's packets and bytes, as listed."""
    name: str
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Listing:
    """The entries of `nft -j list ruleset` (its "nftables" list)."""
    entries: tuple

    @classmethod
    def of(cls, listed: dict) -> Listing:
        return cls(tuple(listed["nftables"]))

    def owned(self, tables: Iterable[str], family: str = TABLE_FAMILY) -> Iterator[dict]:
        """The entries of the named tables of `family`, each table's own entry included."""
        wanted = {(family, name) for name in tables}
        return (entry for entry in self.entries
                if "metainfo" not in entry and owner(entry) in wanted)

    def with_sets(self, whole: Iterable[dict]) -> Listing:
        """This listing (a terse one, without elements) with these sets as
        listed whole: `nft -j list set` bodies, in place of their terse entries."""
        listed = {(s["family"], s["table"], s["name"]): s for s in whole}
        return Listing(tuple(
            {"set": listed.get((e["set"]["family"], e["set"]["table"], e["set"]["name"]),
                               e["set"])} if "set" in e else e for e in self.entries))

    def has_table(self, table: str, family: str = TABLE_FAMILY) -> bool:
        return any("table" in entry for entry in self.owned([table], family))

    def sets(self, table: str) -> dict[str, dict]:
        """The sets of `table`, by name."""
        return {e["set"]["name"]: e["set"] for e in self.owned([table]) if "set" in e}

    def timeout_sets(self, table: str) -> set[str]:
        """The sets of `table` that take elements with timeouts."""
        return {name for name, body in self.sets(table).items()
                if "timeout" in body.get("flags", ())}

    def counters(self, table: str) -> dict[str, dict]:
        """The named counters of `table`, by name."""
        return {e["counter"]["name"]: e["counter"] for e in self.owned([table])
                if "counter" in e}

    def counts(self, table: str, names: Iterable[str]) -> tuple[LiveCount, ...]:
        """The counts of those named counters of `table` that have counted
        something, in the order of `names`."""
        live = self.counters(table)
        return tuple(LiveCount(name, live[name]["packets"], live[name]["bytes"])
                     for name in names if name in live
                     and (live[name]["packets"] or live[name]["bytes"]))

    def elements(self, table: str, set_name: str) -> tuple[LiveElement, ...]:
        """The elements set `set_name` of `table` holds, with their timeouts."""
        body = self.sets(table)[set_name]
        return tuple(_element(element, body.get("timeout")) for element in body.get("elem", ()))

    def addresses(self, table: str, set_name: str) -> Optional[tuple[Interval, ...]]:
        """The addresses a listed set holds, merged as the plan holds a set's
        (`NftSet.intervals`), however they were written and nft lists them
        (hosts, networks, ranges; as loaded, or merged); None when an element
        is no address."""
        found = []
        for element in self.sets(table)[set_name].get("elem", ()):
            interval = _interval(_attributes(element).get("val", element))
            if interval is None:
                return None
            found.append(interval)
        return merge(found)

    def drop_chains(self) -> Iterator[dict]:
        """The base chains of every table with policy drop."""
        return (entry["chain"] for entry in self.entries
                if "chain" in entry and entry["chain"].get("hook")
                and entry["chain"].get("policy") == "drop")


def _address(text: str) -> str:
    if not _ADDRESS.fullmatch(text):
        raise ValueError(f"nft listed an element that is no address: {text!r}")
    return text


def _interval(value) -> Optional[Interval]:
    """A listed address, {"prefix": ...} or {"range": [...]} as (first, last)."""
    if isinstance(value, str):
        parsed = parse_int(value)
        return None if parsed is None else (parsed[1], parsed[1])
    if isinstance(value, dict) and "prefix" in value:
        address, length = value["prefix"].get("addr"), value["prefix"].get("len")
        parsed = parse_int(address) if isinstance(address, str) else None
        if parsed is None or not isinstance(length, int) or not 0 <= length <= BITS[parsed[0]]:
            return None
        return parsed[1], parsed[1] | host_mask(parsed[0], length)
    if isinstance(value, dict) and "range" in value:
        low, high = (parse_int(end) if isinstance(end, str) else None for end in value["range"])
        return None if low is None or high is None else (low[1], high[1])
    return None


def _attributes(element) -> dict:
    """A listed element's `{"elem": {"val": ..., "timeout": ...}}` body, or {}
    for a bare value (an element without timeout or comment)."""
    return element.get("elem", {}) if isinstance(element, dict) else {}


def _element(element, set_timeout: Optional[int]) -> LiveElement:
    inner = _attributes(element)
    value = inner.get("val", element)
    if isinstance(value, str):
        parsed = _address(value)
    elif "prefix" in value:
        parsed = f"{_address(value['prefix']['addr'])}/{int(value['prefix']['len'])}"
    else:
        parsed = tuple(map(_address, value["range"]))
    expires = inner.get("expires")
    if expires is None:
        return LiveElement(parsed)
    return LiveElement(parsed, inner.get("timeout", set_timeout or expires), expires)
