"""Diagnostics: every problem found in a policy, as data.

Each stage collects its problems into a list of Diagnostic instead of raising
on the first one, so that the user sees every error in one run, sorted by
where it is. A diagnostic is an error (the policy cannot compile) or a
warning (it compiles, but probably does not do what was meant).
"""

from __future__ import annotations

from dataclasses import field

from .records import record


@record(order=True)
class Position:
    """A place in a policy file; lines and columns count from 1."""

    file: str
    line: int
    col: int

    def __init__(self, file: str, line: int, col: int) -> None:
        """Written out: there is one a YAML node, and this takes half the time
        of a frozen dataclass's __init__, a third of a record's generic one."""
        state = self.__dict__
        state["file"], state["line"], state["col"] = file, line, col

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@record(order=True)
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
