"""The two generators print one plan: the nft text and the libnftables JSON
of every golden policy load into the kernel as the same ruleset, compared on
nft's own listing (handles aside)."""

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from mailpubc.api import compile_path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden"
RULESETS = sorted(p for p in GOLDEN.iterdir() if (p / "expected.nft").exists())


def listing_after_loading(ruleset: str, *flags: str) -> dict:
    """Load `ruleset` into a fresh private network namespace (in UTC, where
    nft lists hours) and return `nft -j list ruleset` without handles."""
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as file:
        file.write(ruleset)
        file.flush()
        run = subprocess.run(
            ["unshare", "-n", "sh", "-c", f'nft {" ".join(flags)} -f "$1" && nft -j list ruleset',
             "load", file.name], capture_output=True, text=True, timeout=60,
            env={"TZ": "UTC", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert run.returncode == 0, run.stderr
    return _without_handles(json.loads(run.stdout))


def _without_handles(node):
    if isinstance(node, dict):
        return {k: _without_handles(v) for k, v in node.items() if k != "handle"}
    if isinstance(node, list):
        return [_without_handles(v) for v in node]
    return node


@pytest.mark.parametrize("case", RULESETS, ids=[c.name for c in RULESETS])
def test_text_and_json_load_to_the_same_listing(case):
    result = compile_path(str(case / "policy.yaml")).or_raise()
    from_text = listing_after_loading(result.text)
    from_json = listing_after_loading(result.json_text, "-j")
    assert from_json == from_text

