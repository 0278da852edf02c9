"""The library API: what the command line, Ansible, pre-commit and the tests
call. The compiler, top to bottom: load -> validate -> resolve -> check the
model -> plan; the generators print the plan on demand.

    result = compile_path("policy.yaml")
    if result.errors: ...           # diagnostics as data, with file, line, column
    result.ruleset                  # the typed plan (mailpubc.plan)
    result.text, result.json        # nft text, libnftables JSON (a dict)

Nothing here prints or exits; the nft dry run and loading are `mailpubc.nft`'s.
"""

from __future__ import annotations

import json as _json
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Optional

import yaml

from . import collector, loader, plan, resolve, schema, semantics, shadow
from .diagnostics import Diagnostic, PolicyError
from .model import Policy

STDIN = "<stdin>"


@dataclass(frozen=True)      # no slots: cached_property keeps the texts in __dict__
class Result:
    """A compiled policy: its diagnostics and, when it has no errors, its
    model and plan."""

    source: str                         # the policy's file name, or <stdin>, <data>
    diagnostics: tuple[Diagnostic, ...]
    policy: Optional[Policy] = None
    ruleset: Optional[plan.Ruleset] = None
    digest: Optional[str] = None        # SHA-256 of the policy's bytes (apply keeps it)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def or_raise(self) -> "Result":
        """This result, or PolicyError with its errors: for callers that want
        an exception rather than a check."""
        if self.errors:
            raise PolicyError(list(self.errors))
        return self

    def _plan(self) -> plan.Ruleset:
        return self.or_raise().ruleset

    @cached_property
    def text(self) -> str:
        """The ruleset as nft text (raises PolicyError when the policy is invalid)."""
        from .generate import text
        return text.generate(self._plan())

    @cached_property
    def fallback_text(self) -> str:
        """The boot's fallback ruleset (`plan.fallback`: management SSH only) as nft text."""
        from .generate import text
        return text.generate(plan.fallback(self.or_raise().policy))

    @cached_property
    def json(self) -> dict:
        """The ruleset as libnftables JSON (`nft -j -f` loads it)."""
        from .generate import json
        return json.generate(self._plan())

    @property
    def json_text(self) -> str:
        """The JSON with one command a line, so that a diff reads rule by rule."""
        commands = ",\n".join(_json.dumps(c, separators=(",", ":")) for c in self.json["nftables"])
        return '{"nftables":[\n' + commands + "\n]}\n"


def compile_path(path: str) -> Result:
    """Compile one policy file; `-` reads standard input."""
    if path == "-":
        return compile_bytes(sys.stdin.buffer.read(loader.MAX_FILE_BYTES + 1), STDIN)
    with collector.paused():
        try:
            return _compile(loader.load(path))
        except PolicyError as exc:
            return Result(path, tuple(exc.diagnostics))


def compile_text(text: str, name: str = STDIN) -> Result:
    """Compile a policy given as text; diagnostics name it `name`."""
    return compile_bytes(text.encode("utf-8"), name)


def compile_bytes(raw: bytes, name: str) -> Result:
    with collector.paused():
        try:
            return _compile(loader.parse(name, raw))
        except PolicyError as exc:
            return Result(name, tuple(exc.diagnostics))


def compile_data(data: Any, name: str = "<data>") -> Result:
    """Compile already-parsed data (an Ansible variable, say). It is written
    out as YAML first, so positions in diagnostics point into that text."""
    return compile_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), name)


def _compile(document: loader.Document) -> Result:
    source = document.file
    problems, checkable = schema.validate(document)
    if checkable is None:
        return Result(source, _sorted(problems), digest=document.digest)
    # resolve what did fit the schema, so both stages' errors come in one run;
    # the whole-model checks only on a document with nothing left out
    policy, found = resolve.resolve(checkable)
    problems += found
    if problems:
        return Result(source, _sorted(problems), digest=document.digest)
    problems = semantics.check(policy)
    errors = [d for d in problems if d.severity == "error"]
    if errors:
        # warnings wait until the policy compiles: they may be about what an error changes
        return Result(source, _sorted(errors), digest=document.digest)
    ruleset = plan.plan(policy)
    return Result(source, _sorted(problems + shadow.check(ruleset)), policy, ruleset,
                  document.digest)


def _sorted(problems) -> tuple[Diagnostic, ...]:
    """By position, each once (two checks may find the same problem)."""
    return tuple(sorted(set(problems)))
