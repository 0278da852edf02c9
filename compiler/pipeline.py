"""The compiler, top to bottom: load -> validate -> resolve -> check the
model -> plan -> render. Each stage is its own module; they talk through the
Document, the Policy model and the Ruleset plan. The nft dry run (`nftcheck`)
is left to the caller, which decides what to do when nft is not there."""

from __future__ import annotations

from dataclasses import dataclass

from . import loader, plan, render, resolve, schema, semantics
from .diagnostics import PolicyError
from .model import Policy


@dataclass(frozen=True)
class Compiled:
    policy: Policy
    ruleset: plan.Ruleset
    text: str


def compile_file(path: str) -> Compiled:
    """Compile one policy file, or raise PolicyError with every problem found."""
    document = loader.load(path)
    problems, checkable = schema.validate(document)
    if checkable is None:
        raise PolicyError(problems)
    # resolve what did fit the schema, so both stages' errors come in one run;
    # the whole-model checks only on a document with nothing left out
    policy, found = resolve.resolve(checkable)
    problems += found
    if problems:
        raise PolicyError(problems)
    problems = semantics.check(policy)
    if problems:
        raise PolicyError(problems)
    ruleset = plan.plan(policy)
    return Compiled(policy, ruleset, render.render(ruleset))
