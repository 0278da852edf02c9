"""List files: address sets read from `{file: PATH}`, without YAML.

Blocklists are long (Spamhaus DROP, FireHOL netsets: thousands to hundreds
of thousands of networks) and published in a line format of their own, so
they are read line by line here, each entry parsed by the resolver like any
address in a policy. A line holds one address, network or `A-B` range;
`#` and `;` start a comment, whole-line or trailing (`1.10.16.0/20 ; SBL256894`);
blank lines, a byte-order mark and CRLF line ends are fine.

Spamhaus also publishes DROP as JSON lines (`drop_v4.json`, `drop_v6.json`):
a line that starts with `{` is a JSON object, the network of its `cidr` key
(other objects, such as the trailing metadata line, are skipped). A file is
one kind or the other: the first entry decides, and a line of the other
kind ends the reading with an error (`ListError`), as does a line that is
not valid JSON.

A list's diagnostics name the file as the policy's folder joined with the
path written in the policy (`golden/block/lists/drop.txt:3:1`), which is
the file itself as seen from where mailpubc runs.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Iterator, Optional

from .diagnostics import Position

MAX_LIST_BYTES = 64 * 1024 * 1024
MAX_LIST_ERRORS = 20        # a wrong file (HTML, say) is reported by its first lines
# one entry a line: its first to its last character outside white space and a comment
_ENTRY = re.compile(r"^[^\S\n]*([^\s#;](?:[^#;\n]*[^\s#;])?)[^\S\n]*(?:[#;].*)?$", re.M)


def list_path(folder: Optional[str], written: str) -> str:
    """The list file as it is opened and named in diagnostics: `written`
    joined to the policy's folder (None: the working directory)."""
    return os.path.join(folder, written) if folder else written


def read(path: str) -> str:
    """The list's text; OSError or UnicodeDecodeError (its `start` is the
    offending byte) when it cannot be read, ValueError when it is too large
    or not a regular file. It is opened without blocking and then looked at,
    so a FIFO with no writer (or one put in the file's place after a check)
    is refused instead of waited on for ever."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    kind = _not_regular(os.fstat(descriptor).st_mode)
    if kind:
        os.close(descriptor)
        raise ValueError(f"it is {kind}, not a regular file")
    with open(descriptor, "rb") as stream:
        raw = stream.read(MAX_LIST_BYTES + 1)
    if len(raw) > MAX_LIST_BYTES:
        raise ValueError(f"list file is larger than {MAX_LIST_BYTES // (1024 * 1024)} MiB")
    return raw.decode("utf-8").removeprefix("\ufeff")


def _not_regular(mode: int) -> str:
    """What an opened file that is not a regular file is ("" for a regular
    file); a socket cannot be opened at all (OSError)."""
    if stat.S_ISREG(mode):
        return ""
    return "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device"


class Place:
    """Where an entry of a list file starts. Its line and column are counted
    only for a diagnostic: a list of 100,000 lines is read in a blink."""

    __slots__ = ("file", "text", "offset")

    def __init__(self, file: str, text: str, offset: int):
        self.file, self.text, self.offset = file, text, offset

    def position(self) -> Position:
        return Position.at(self.file, self.text, self.offset)


class ListError(Exception):
    """A line that makes the rest of the list meaningless; reading stops."""

    def __init__(self, place: Place, message: str):
        super().__init__(message)
        self.place, self.message = place, message


def entries(path: str, text: str) -> Iterator[tuple[Place, str]]:
    """Each entry of the list with where it starts; raises ListError."""
    json_lines = None        # the kind of list, decided by its first entry
    for match in _ENTRY.finditer(text):
        place = Place(path, text, match.start(1))
        is_json = match.group(1).startswith("{")
        if json_lines is None:
            json_lines = is_json
        elif is_json != json_lines:
            raise ListError(place, f"a {'JSON' if is_json else 'text'} line in a list of "
                                   f"{'JSON' if json_lines else 'text'} lines: a list file "
                                   "is one or the other")
        if not is_json:
            yield place, match.group(1)
            continue
        network = _cidr(place, text[match.start(1):match.end()].rstrip())
        if network is not None:
            yield network


def _cidr(place: Place, line: str) -> Optional[tuple[Place, str]]:
    """A JSON line's network (`cidr`) with where it is written; None for
    another object. The whole line is JSON: `#` and `;` may be in its strings."""
    try:
        found = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ListError(Place(place.file, place.text, place.offset + exc.pos),
                        f"a JSON line that is not valid JSON: {exc.msg}") from None
    if "cidr" not in found:
        return None
    network = found["cidr"]
    if not isinstance(network, str):
        raise ListError(place, f"a JSON line whose cidr is not a string: {network!r}")
    written = line.find(json.dumps(network))         # the value itself, if written plainly
    return Place(place.file, place.text, place.offset + written + 1 if written >= 0
                 else place.offset), network


def decode_error_position(path: str, raw_prefix: bytes) -> Position:
    """Where the first byte that is not UTF-8 sits, `raw_prefix` being the
    bytes before it."""
    valid = raw_prefix.decode("utf-8")
    return Position.at(path, valid, len(valid))
