"""The two generators print one plan: the nft text and the libnftables JSON
of every golden policy, and of random policies with nested sets, load into
the kernel as the same ruleset, compared on nft's own listing (handles
aside). Random valid policies: tests/test_properties.py's kernel property."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from kernel import loaded_alike
from mailpubc.api import compile_path, compile_text
from strategies import nested_set_policies

ROOT = Path(__file__).resolve().parent.parent
RULESETS = sorted(p for p in (ROOT / "golden").iterdir() if (p / "expected.nft").exists())


pytestmark = pytest.mark.usefixtures("namespaces_work")     # conftest: skips without them


@pytest.mark.parametrize("case", RULESETS, ids=[c.name for c in RULESETS])
def test_text_and_json_load_to_the_same_listing(case):
    loaded_alike(compile_path(str(case / "policy.yaml")).or_raise())


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(nested_set_policies())
def test_sets_written_through_defines_load_as_their_json(draw):
    """The text's defines and auto-merge leave in the kernel exactly the
    merged sets the JSON writes out."""
    loaded_alike(compile_text(draw.text, "draw.yaml").or_raise())
