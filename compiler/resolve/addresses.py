"""Resolving addresses: address sets (flattened once each, in dependency
order, without recursion), list files, and the `from`, `to` and `ssh` of
rules. The syntax of one entry is `addresses.parse_entry`'s."""

from __future__ import annotations

from typing import Any, Optional

from .. import addresses as syntax
from .. import lists
from ..addresses import Address, Interval
from ..diagnostics import did_you_mean
from ..loader import Path
from ..model import AddressRef, Addresses

LOCALHOST = "localhost"
ANY = "any"


class AddressResolving:
    """The address part of the resolver (`resolve.Resolver`)."""

    def _entry(self, path: Path, text: str) -> Optional[tuple[int, Interval]]:
        """One address, network or range as (version, interval); None after reporting."""
        try:
            return syntax.parse_entry(text)
        except syntax.EntryError as exc:
            self.error(path, str(exc))
            return None

    def _address(self, path: Path, text: str) -> Address:
        """A single address (server, external address), refused if IPv4-mapped."""
        address = syntax.parse_address(text)
        ipv4 = syntax.mapped_ipv4(address.version, int(address))
        if ipv4 is not None:
            self.error(path, syntax.mapped_message(text, ipv4))
        return address

    @staticmethod
    def _addresses_of(entries: list) -> Addresses:
        """Merge (version, interval) pairs and whole Addresses into one collection."""
        if len(entries) == 1 and isinstance(entries[0], Addresses):
            return entries[0]           # a set, merged once however many rules use it
        v4: list[Interval] = []
        v6: list[Interval] = []
        for entry in entries:
            if isinstance(entry, Addresses):
                v4.extend(entry.v4)
                v6.extend(entry.v6)
            elif entry is not None:
                (v4 if entry[0] == 4 else v6).append(entry[1])
        return Addresses.of(v4, v6)

    def _address_sets(self) -> None:
        """Flatten every set once, in dependency order; report undefined names and cycles."""
        raw: dict[str, list] = self.data.get("address_sets") or {}
        for name in raw:
            if name in (LOCALHOST, ANY):
                self.key_error(("address_sets", name),
                               f"{name!r} is a reserved word and cannot name an address set")
        uses: dict[str, list[str]] = {}
        naming: dict[str, set[int]] = {}    # the entries of each set that name a set
        for name, entries in raw.items():
            uses[name] = []
            if isinstance(entries, dict):    # {file: PATH}: a list file names no sets
                continue
            naming[name] = {i for i, entry in enumerate(entries) if self._is_name(entry)}
            for i in sorted(naming[name]):
                entry = entries[i]
                if entry in raw:
                    uses[name].append(entry)
                    self.named_sets.add(entry)
                elif entry not in self.zones:
                    self._undefined_set(("address_sets", name, i), entry)
        self.includes = {name: tuple(dict.fromkeys(named)) for name, named in uses.items()}
        order, cyclic = _dependency_order(uses)
        for cycle in _cycles(uses, cyclic):
            self.key_error(("address_sets", cycle[0]),
                           "address sets refer to each other in a cycle: "
                           + " -> ".join(cycle + [cycle[0]]))
        for name in order:
            if isinstance(raw[name], dict):
                self.sets[name] = self._list_file(("address_sets", name, "file"),
                                                  raw[name]["file"])
                continue
            self.sets[name] = self._addresses_of([
                self.sets.get(entry) or self.zones.get(entry, Addresses()) if i in naming[name]
                else self._entry(("address_sets", name, i), entry)
                for i, entry in enumerate(raw[name])])

    def _list_file(self, path: Path, written: str) -> Addresses:
        """An address set read from a list file (`lists`); its errors point
        into the file, an unreadable file's at the `file:` key."""
        file = lists.list_path(self.doc.folder, written)
        try:
            text = lists.read(file)
        except UnicodeDecodeError as exc:
            self.error(lists.decode_error_position(file, exc.object[:exc.start]),
                       f"list file is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})")
            return Addresses()
        except (OSError, ValueError) as exc:     # ValueError: too large, or a NUL in the path
            reason = exc.strerror if isinstance(exc, OSError) else exc
            self.key_error(path, f"cannot read list file {file!r}: {reason}")
            return Addresses()
        found, before = [], len(self.problems.diagnostics)
        try:
            for position, entry in lists.entries(file, text):
                if len(self.problems.diagnostics) - before == lists.MAX_LIST_ERRORS:
                    self.error(position, f"more errors in {file} are not shown")
                    break
                found.append(self._entry(position, entry))
        except lists.ListError as exc:
            self.error(exc.place, exc.message)
        return self._addresses_of(found)

    @staticmethod
    def _is_name(text: str) -> bool:
        return (syntax.NAME.fullmatch(text) is not None
                and syntax.parse_range(text) is None)

    def _undefined_set(self, path: Path, name: str) -> None:
        if name == LOCALHOST:
            self.error(path, "'localhost' is not an address: it can only stand alone "
                             "in a rule's `from` or `server`")
            return
        if name == ANY:
            self.error(path, "'any' can only stand alone as a rule's `to`")
            return
        zoned = isinstance(self.data["firewall"].get("internal"), list)
        self.error(path, f"undefined address set{' or zone' if zoned else ''} {name!r}"
                   + did_you_mean(name, [*(self.data.get("address_sets") or {}), *self.zones]))

    def _addresses(self, path: Path, value: Any, *, allow_localhost: bool = False,
                   allow_any: bool = False) -> AddressRef:
        """Resolve `from`, `to` or `ssh`: one entry or a list of them."""
        entries = [value] if isinstance(value, str) else list(value)
        entry_paths = [path] if isinstance(value, str) else [path + (i,) for i in range(len(entries))]
        if allow_any and ANY in entries:
            if len(entries) > 1:
                self.error(path, "'any' must stand alone")
            return AddressRef(Addresses(), any=True, position=self.at(path))
        found: list = []
        localhost = False
        zones = []
        defined = self.data.get("address_sets") or {}
        for entry, entry_path in zip(entries, entry_paths):
            if entry == LOCALHOST and allow_localhost:
                localhost = True
            elif entry in self.zones and entry not in defined:
                zones.append(entry)
                found.append(self.zones[entry])
            elif self._is_name(entry):
                self.named_sets.add(entry)
                if entry in self.sets:
                    found.append(self.sets[entry])
                elif entry not in defined:
                    self._undefined_set(entry_path, entry)
            else:
                found.append(self._entry(entry_path, entry))
        set_name = entries[0] if len(entries) == 1 and entries[0] in self.sets else None
        return AddressRef(self._addresses_of(found), set_name=set_name, localhost=localhost,
                          position=self.at(path), zones=tuple(zones))


def _dependency_order(uses: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Kahn's algorithm: names in an order where each comes after what it uses,
    and the names that cannot be ordered because they sit on or behind a cycle."""
    waiting = {name: len(set(deps)) for name, deps in uses.items()}
    used_by: dict[str, list[str]] = {name: [] for name in uses}
    for name, deps in uses.items():
        for dep in set(deps):
            used_by[dep].append(name)
    ready = [name for name in uses if waiting[name] == 0]
    order = []
    while ready:
        name = ready.pop()
        order.append(name)
        for user in used_by[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    done = set(order)
    return order, [name for name in uses if name not in done]


def _cycles(uses: dict[str, list[str]], unordered: list[str]) -> list[list[str]]:
    """Each cycle among the unordered names once, rotated to start at its
    first-declared set. Every unordered name leads into a cycle, so one walk
    from each not yet visited name finds every cycle in linear time."""
    rank = {name: i for i, name in enumerate(uses)}
    pending = set(unordered)
    visited: set[str] = set()
    cycles = []
    for start in unordered:
        path: dict[str, int] = {}
        name = start
        while name not in visited and name not in path:
            path[name] = len(path)
            name = next(dep for dep in uses[name] if dep in pending)
        if name in path:   # this walk closed a new cycle
            cycle = list(path)[path[name]:]
            at = cycle.index(min(cycle, key=rank.__getitem__))
            cycles.append(cycle[at:] + cycle[:at])
        visited.update(path)
    return cycles
