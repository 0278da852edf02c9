"""What every command of `mailpubc` shares: compiling with its diagnostics
reported, warnings, the argument types, the output file. Cheap to import:
each command imports the compiler when it runs."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING, Iterable, Optional

from ..diagnostics import ExitCode, UsageError

if TYPE_CHECKING:
    from ..api import Result


class InternalError(Exception):
    """The compiler wrote something it should not have: a bug, not bad input."""


class Exit(Exception):
    """Leave the command with `status`, its diagnostics already reported."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def compiled(path: str) -> Result:
    """POLICY compiled, each diagnostic on stderr."""
    from .. import api      # late: building the parser must not load the compiler
    result = api.compile_path(path)
    report(result)
    return result


def report(result: Result) -> None:
    """Each diagnostic on stderr, as FILE:LINE:COL: SEVERITY: MESSAGE."""
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)


def compiled_or_exit(path: str, invalid: int = ExitCode.INVALID) -> Result:
    """POLICY compiled, each diagnostic on stderr; an invalid policy exits
    with `invalid` (1; diff and dns-check say 2)."""
    result = compiled(path)
    if not result.ok:
        raise Exit(invalid)
    return result


def say(message: str) -> None:
    print(f"mailpubc: {message}", file=sys.stderr)


def warn(warnings: Iterable[str]) -> None:
    for warning in warnings:
        say(f"warning: {warning}")


def netns_name(text: str) -> str:
    """A name `ip netns` made (/run/netns/NAME), also a folder name in the state."""
    if text in (".", "..") or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"not a network namespace name: {text!r}")
    return text


def seconds(text: str) -> float:
    """Decimal seconds in ASCII digits: `float` also takes `1_0`, other
    scripts' digits, nan and inf."""
    value = float(text) if re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text) else 0
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"not a number of seconds (0 to 86400): {text!r}")
    return value


def emit(text: str, path: Optional[str]) -> None:
    """To `-o FILE` (`write_output`), or to standard output."""
    if path is None:
        sys.stdout.write(text)
    else:
        write_output(path, text)


def write_output(path: str, text: str) -> None:
    """`-o FILE`: written whole or not at all (mode 0644), never over a
    device, /dev/stdout or a folder."""
    from ..files import write_atomically
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UsageError(f"cannot write {path}: not a regular file (it would be replaced)")
    try:
        write_atomically(path, text, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
