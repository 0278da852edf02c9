"""Every kind of match and statement the plan knows (`plan.KINDS`, filled by
the classes themselves) is printed by both generators, judged by the packet
evaluator and has a shadow decision: a new kind missing any of them fails
here, not in a user's ruleset."""

from __future__ import annotations

import pytest

from mailpubc import plan, shadow
from mailpubc.evaluate import kinds as evaluator_kinds
from mailpubc.generate import json, text


def evaluators() -> set[str]:
    """The kinds the packet evaluator judges."""
    return set(evaluator_kinds.MATCHES) | set(evaluator_kinds.STATEMENTS)


HANDLERS = {
    "text macro": lambda: set(text.printers()),
    "JSON printer": lambda: set(json.PRINTERS),
    "evaluator": evaluators,
    "shadow decision": lambda: set(shadow.MATCH_IMPLIES) | set(shadow.STATEMENT_ROLES),
}


@pytest.mark.parametrize("handler", HANDLERS)
def test_every_kind_has_its_handler(handler):
    handled = HANDLERS[handler]()
    missing = sorted(set(plan.KINDS) - handled)
    assert not missing, f"plan kinds without a {handler}: {missing}"
    unknown = sorted(handled - set(plan.KINDS))
    assert not unknown, f"{handler} for kinds the plan does not have: {unknown}"


def test_the_registry_holds_every_match_and_statement_class():
    """A class of the plan's data with a kind is registered under it, once."""
    parts = [value for value in vars(plan).values() if isinstance(value, type)
             and issubclass(value, (plan.Match, plan.Statement))
             and value not in (plan.Match, plan.Statement)]
    assert {part.kind: part for part in parts} == plan.KINDS
    assert len(plan.KINDS) == len(parts)
