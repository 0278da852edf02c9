"""The two generators print one plan: the nft text and the libnftables JSON
of every golden policy, and of random valid policies, load into the kernel
as the same ruleset, compared on nft's own listing (handles aside)."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import failclosed
from kernel import without_handles
from mailpubc.api import compile_path, compile_text
from strategies import nested_set_policies, policies

ROOT = Path(__file__).resolve().parent.parent
RULESETS = sorted(p for p in (ROOT / "golden").iterdir() if (p / "expected.nft").exists())


def assert_same_listing(result) -> None:
    from_text = without_handles(failclosed.load(result.text))
    from_json = without_handles(failclosed.load(result.json_text, json=True))
    assert from_json == from_text


@pytest.mark.parametrize("case", RULESETS, ids=[c.name for c in RULESETS])
def test_text_and_json_load_to_the_same_listing(case):
    assert_same_listing(compile_path(str(case / "policy.yaml")).or_raise())


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])
@given(policies())
def test_random_valid_policy_text_and_json_load_the_same(draw):
    assert_same_listing(compile_text(draw.text, "draw.yaml").or_raise())


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(nested_set_policies())
def test_sets_written_through_defines_load_as_their_json(draw):
    """The text's defines and auto-merge leave in the kernel exactly the
    merged sets the JSON writes out."""
    assert_same_listing(compile_text(draw.text, "draw.yaml").or_raise())
