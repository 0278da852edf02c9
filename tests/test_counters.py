"""Named counters: every accept of a policy rule counts in that rule's own
counter, `KIND_NAME`, declared once; distinct policy rules never share one
(what `mailpubc stats` will read). Checked on every golden ruleset's plan."""

from pathlib import Path

import pytest

from mailpubc.api import compile_path
from mailpubc.plan import ACCEPT, CounterRef, Dispatch

ROOT = Path(__file__).resolve().parent.parent
POLICIES = sorted(p for p in (ROOT / "golden").glob("*/policy.yaml")
                  if (p.parent / "expected.nft").exists())
COUNTED = ("publish", "outbound", "management")


@pytest.mark.parametrize("path", POLICIES, ids=[p.parent.name for p in POLICIES])
def test_each_policy_rule_counts_in_its_own_counter(path):
    ruleset = compile_path(str(path)).or_raise().ruleset
    owners: dict[str, set] = {}
    # a dispatch's chains count as the base chain whose map jumps to them
    types = {c.name: c.hook.type for c in ruleset.chains if c.hook}
    types.update({e.target: types[c.name] for c in ruleset.chains if c.hook for r in c.rules
                  for s in r.statements if isinstance(s, Dispatch) for e in s.entries})
    for chain in ruleset.chains:
        for rule in chain.rules:
            refs = [s.name for s in rule.statements if isinstance(s, CounterRef)]
            counted = types[chain.name] == "filter" and rule.origin.kind in COUNTED \
                and ACCEPT in rule.statements
            assert len(refs) == (1 if counted else 0), rule
            for name in refs:
                owners.setdefault(name, set()).add((rule.origin.kind, rule.origin.name))
    assert all(len(rules) == 1 for rules in owners.values()), owners
    assert set(ruleset.counters) == set(owners)
    assert list(ruleset.counters) == sorted(set(ruleset.counters))
