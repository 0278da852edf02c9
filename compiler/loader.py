"""Load stage: policy file -> plain data with the position of every node.

The document is built from PyYAML's event stream, not its constructor, for
four reasons:

- scalars are resolved by our own rules (close to YAML 1.2's core schema), so
  the YAML 1.1 traps cannot change meaning silently: `22:25` stays a string,
  `on`/`no`/`yes` stay strings, and `0755` is an error instead of octal 493;
- every value and key keeps its line and column, for error messages;
- duplicate keys are an error instead of "last one wins";
- depth, size and alias expansion are counted as the events arrive, so alias
  bombs, absurd nesting and huge files fail fast and in bounded memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any, Optional, Union

import yaml

from .diagnostics import Collector, Diagnostic, PolicyError, Position

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 1_000_000
MAX_ALIASED = 100_000     # values that aliases may add: ample for sharing lists

Path = tuple[Union[str, int], ...]

_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True,
          "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_STR_TAG = "tag:yaml.org,2002:str"

try:  # libyaml is faster; the pure-Python parser gives the same events
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded policy: plain data, and where each part of it was written."""

    file: str
    data: Any
    positions: dict[Path, Position]       # of each value
    key_positions: dict[Path, Position]   # of each mapping key, by the value's path
    folder: Optional[str] = None          # the policy file's folder; None: read from text
    digest: Optional[str] = None          # SHA-256 of the policy's bytes, as read

    def position(self, path: Path) -> Position:
        """Where `path` was written, or its nearest written ancestor."""
        path = tuple(path)
        while path not in self.positions:
            path = path[:-1]
        return self.positions[path]

    def key_position(self, path: Path) -> Position:
        """Where the key of the mapping entry at `path` was written."""
        path = tuple(path)
        return self.key_positions.get(path) or self.position(path)


def load(file: str) -> Document:
    """Read and parse a policy file, or raise PolicyError."""
    try:
        with open(file, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyError([Diagnostic(Position(file, 1, 1), f"cannot read policy: {exc.strerror}")])
    return dataclasses.replace(parse(file, raw), folder=os.path.dirname(file))


def parse(file: str, raw: bytes) -> Document:
    """Parse policy bytes (at most MAX_FILE_BYTES of them are looked at, so a
    caller reads MAX_FILE_BYTES + 1); `file` is only used in positions."""
    if len(raw) > MAX_FILE_BYTES:
        raise PolicyError([Diagnostic(
            Position(file, 1, 1),
            f"policy file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        valid = raw[:exc.start].decode("utf-8")   # columns count characters, not bytes
        raise PolicyError([Diagnostic(
            Position.at(file, valid, len(valid)),
            f"policy is not valid UTF-8 (byte 0x{raw[exc.start]:02x})")])
    if text.startswith("\ufeff"):
        text = text[1:]
    builder = _Builder(file)
    try:
        for event in yaml.parse(text, Loader=_Loader):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        raise PolicyError([_syntax_error(file, text, exc)])
    except yaml.reader.ReaderError as exc:
        raise PolicyError([Diagnostic(
            Position.at(file, text, exc.position),
            f"control character U+{exc.character:04X} is not allowed in YAML")])
    except _Stop:
        pass
    builder.problems.raise_if_any()
    if builder.documents == 0 or builder.root is None:
        raise PolicyError([Diagnostic(Position(file, 1, 1), "policy is empty")])
    return Document(file, builder.root, builder.positions, builder.key_positions,
                    digest=hashlib.sha256(raw).hexdigest())


def _syntax_error(file: str, text: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    where = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 1, 1)
    if "maximum nesting depth" in (exc.problem or ""):
        # newer libyaml stops deep flow nesting itself, scanning ahead of our count
        return Diagnostic(where, f"policy is nested more than {MAX_DEPTH} levels deep")
    if mark is not None and text[mark.index:mark.index + 1] == "\t":
        return Diagnostic(where, "YAML syntax error: a tab cannot indent YAML; indent with spaces")
    message = f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}"
    if exc.problem and exc.context and exc.context_mark:
        message += (f" ({exc.context} started at line {exc.context_mark.line + 1},"
                    f" column {exc.context_mark.column + 1})")
    return Diagnostic(where, message)


class _Stop(Exception):
    """Ends parsing early once a fatal limit is hit."""


class _Frame:
    """An open mapping or sequence while its events arrive."""

    def __init__(self, value: Any, path: Path, anchor: str | None, nodes_before: int):
        self.value = value
        self.path = path
        self.anchor = anchor
        self.nodes_before = nodes_before
        self.key: str | None = None
        self.key_position: Position | None = None
        self.first_key_line: dict[str, int] = {}


class _Builder:
    """Turns parser events into plain data plus positions."""

    def __init__(self, file: str):
        self.file = file
        self.problems = Collector()
        self.positions: dict[Path, Position] = {}
        self.key_positions: dict[Path, Position] = {}
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.nodes = 0
        self.aliased = 0
        self.documents = 0
        self.root: Any = None

    def _pos(self, mark) -> Position:
        return Position(self.file, mark.line + 1, mark.column + 1)

    def _fatal(self, mark, message: str) -> None:
        self.problems.error(self._pos(mark), message)
        raise _Stop()

    def _count(self, mark, nodes: int) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            self._fatal(mark, f"policy has more than {MAX_NODES} values "
                              "(after expanding aliases)")

    def _child_path(self) -> Path | None:
        """The path the next value will have, or None when it is a mapping key."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return top.path + (len(top.value),)
        if top.key is None:
            return None
        return top.path + (top.key,)

    def feed(self, event) -> None:
        if type(event) is yaml.ScalarEvent:    # most events: asked first
            self._scalar(event)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self._fatal(event.start_mark,
                            "policy must be a single YAML document")
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._open(event)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            self._close()

    def _check_tag(self, event) -> None:
        if event.tag not in (None, "!", _STR_TAG):
            self.problems.error(self._pos(event.start_mark),
                                f"YAML tag {event.tag!r} is not supported")

    def _open(self, event) -> None:
        self._check_tag(event)
        self._count(event.start_mark, 1)
        if len(self.stack) >= MAX_DEPTH:
            self._fatal(event.start_mark,
                        f"policy is nested more than {MAX_DEPTH} levels deep")
        path = self._child_path()
        if path is None:
            self._fatal(event.start_mark, "a mapping key must be a plain value")
        self.positions[path] = self._pos(event.start_mark)
        value: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
        self.stack.append(_Frame(value, path, event.anchor, self.nodes))

    def _close(self) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.value, self.nodes - frame.nodes_before + 1)
        self._emit(frame.value, self._child_path(), None)

    def _alias(self, event) -> None:
        if event.anchor not in self.anchors:
            self._fatal(event.start_mark, f"unknown YAML alias *{event.anchor}")
        value, size = self.anchors[event.anchor]
        self.aliased += size
        if self.aliased > MAX_ALIASED:
            self._fatal(event.start_mark,
                        f"YAML aliases expand to more than {MAX_ALIASED} values")
        self._count(event.start_mark, size)
        path = self._child_path()
        if path is None:
            self._fatal(event.start_mark, "a mapping key must be a plain value")
        self._emit(value, path, self._pos(event.start_mark))

    def _scalar(self, event) -> None:
        if event.tag is not None:
            self._check_tag(event)
        mark = event.start_mark
        self._count(mark, 1)
        position = self._pos(mark)
        text = event.value
        path = self._child_path()
        if path is None:   # a mapping key: always the text written
            self._key(text, position)
            return
        if not event.style and event.tag is None:   # plain: libyaml says "", PyYAML None
            value = self._resolve_plain(text, position)
        else:
            value = text
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1)
        self._emit(value, path, position)

    def _resolve_plain(self, text: str, position: Position) -> Any:
        if text in _NULLS:
            return None
        if text in _BOOLS:
            return _BOOLS[text]
        if (text.isascii() and text.isdigit()) or (text[:1] in "+-" and _INT.fullmatch(text)):
            digits = text.lstrip("+-")
            if len(digits) > 1 and digits.startswith("0"):
                self.problems.error(
                    position,
                    f"number {text} has a leading zero, which YAML 1.1 reads as "
                    f"octal; write {int(text)} or quote it")
            return int(text)
        return text

    def _key(self, key: str, position: Position) -> None:
        if key == "<<":
            self.problems.error(position, "YAML merge keys ('<<') are not supported; "
                                          "write the keys out")
        top = self.stack[-1]
        if key in top.first_key_line:
            self.problems.error(
                position,
                f"duplicate key {key!r} (first written on line {top.first_key_line[key]})")
        else:
            top.first_key_line[key] = position.line
        top.key = key
        top.key_position = position

    def _emit(self, value: Any, path: Path, position: Position | None) -> None:
        """Put a finished value at `path` (where `_child_path` said it goes);
        a mapping or sequence's position was kept when it opened."""
        if position is not None:
            self.positions[path] = position
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
            return
        if top.key not in top.value:   # on a duplicate key the first one stays
            top.value[top.key] = value
        self.key_positions[path] = top.key_position
        top.key = None
