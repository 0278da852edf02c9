"""Diagnostics: every problem found in a policy, as data.

Each stage collects its problems into a list of Diagnostic instead of raising
on the first one, so that the user sees every error in one run, sorted by
where it is. A diagnostic is an error (the policy cannot compile) or a
warning (it compiles, but probably does not do what was meant).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterable



@dataclass(frozen=True, order=True)    # no slots: __init__ writes its __dict__
class Position:
    """A place in a policy file; lines and columns count from 1."""

    file: str
    line: int
    col: int

    def __init__(self, file: str, line: int, col: int) -> None:
        """Written out: there is one a YAML node, and this takes half the time
        of a frozen dataclass's __init__."""
        state = self.__dict__
        state["file"], state["line"], state["col"] = file, line, col

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    @classmethod
    def at(cls, file: str, text: str, offset: int) -> Position:
        """The line and column of character `offset` in `text`."""
        line_start = text.rfind("\n", 0, offset) + 1
        return cls(file, text.count("\n", 0, offset) + 1, offset - line_start + 1)


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    position: Position
    message: str
    severity: str = field(default="error")

    def __str__(self) -> str:
        return f"{self.position}: {self.severity}: {self.message}"


class PolicyError(Exception):
    """Raised by a stage that cannot go on; carries every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("\n".join(str(d) for d in sorted(diagnostics)))
        self.diagnostics = sorted(set(diagnostics))


class Collector:
    """Gathers a stage's diagnostics and raises them together at its end."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, position: Position, message: str) -> None:
        self.diagnostics.append(Diagnostic(position, message))

    def warning(self, position: Position, message: str) -> None:
        self.diagnostics.append(Diagnostic(position, message, "warning"))

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise PolicyError(self.diagnostics)


NEARLY = 0.15      # a suggestion this much less similar than the best is noise


def line_of(position: "Position | None") -> str:
    """"line N", how a message points at another place in the same file."""
    return f"line {position.line}" if position else "elsewhere"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """"; did you mean 'a' or 'b'?", naming the known words close to a
    misspelt one (at most three, best first, each nearly as close as the
    best: 'Europe/Berln' is Berlin, not Belfast); "" when none is close."""
    close = difflib.get_close_matches(word, list(known), n=3, cutoff=0.6)
    if not close:
        return ""

    def similarity(name: str) -> float:     # as get_close_matches measures it
        return difflib.SequenceMatcher(None, name, word).ratio()
    best = similarity(close[0])
    shown = [repr(name) for name in close if similarity(name) >= best - NEARLY]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f"; did you mean {listed}?"


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit 2)."""


class ExitCode(IntEnum):
    """The exit statuses of every command (docs/policy-language.md); the
    deploy and boot commands give some numbers their own meaning."""

    OK = 0
    INVALID = 1         # the policy is invalid (or, for check --strict, has warnings)
    USAGE = 2           # wrong usage
    INTERNAL = 3        # a bug: the compiler wrote what nft refuses
    REFUSED = 2         # apply: lock held, a confirmation pending, lockout guard
    NFT = 3             # apply: nft refused the ruleset, nothing changed
    ROLLED_BACK = 4     # apply --confirm: not confirmed, the previous state restored
    DIFFERS = 1         # diff: the live table is not the policy's
    FALLBACK = 1        # boot-load: the fallback (or the lockdown) loaded
    NOTHING = 3         # boot-load: nothing could be loaded
