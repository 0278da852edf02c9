"""Golden files: each golden/<case>/policy.yaml must compile to exactly its
expected.nft and expected.json (libnftables JSON), or fail with exactly its
expected.err; and every expected ruleset must itself pass nft's dry run, so
no golden file can freeze a ruleset nft would refuse. Add a case by adding a folder; regenerate with
tools/regen_golden.py and review the diff."""

import re
from pathlib import Path

import pytest

from mailpubc import nft
from mailpubc.cli import main as mailpubc

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p for p in GOLDEN.iterdir() if (p / "policy.yaml").exists())
RULESETS = [c for c in CASES if (c / "expected.nft").exists()]


def test_every_case_has_a_ruleset_or_an_error_expected():
    for case in CASES:
        found = {name for name in ("expected.nft", "expected.json", "expected.err")
                 if (case / name).exists()}
        assert found in ({"expected.nft", "expected.json"}, {"expected.err"}), \
            f"{case.name}: needs expected.nft and expected.json, or expected.err"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compiles_to_expected(case, monkeypatch, capsys):
    monkeypatch.chdir(case)
    status = mailpubc(["--no-nft-check", "policy.yaml"])
    out, err = capsys.readouterr()
    if (case / "expected.nft").exists():
        warnings = case / "expected.warn"
        assert (status, err) == (0, warnings.read_text(encoding="utf-8") if warnings.exists() else "")
        assert out == (case / "expected.nft").read_text(encoding="utf-8")
        assert mailpubc(["--no-nft-check", "--format", "json", "policy.yaml"]) == 0
        assert capsys.readouterr().out == (case / "expected.json").read_text(encoding="utf-8")
    else:
        assert status == 1
        assert out == ""
        assert err == (case / "expected.err").read_text(encoding="utf-8")
        assert "Traceback" not in err


@pytest.mark.parametrize("case", RULESETS, ids=[c.name for c in RULESETS])
@pytest.mark.parametrize("expected", ["expected.nft", "expected.json"])
def test_expected_ruleset_passes_nft_dry_run(case, expected):
    result = nft.dry_run((case / expected).read_text(encoding="utf-8"),
                              json=expected.endswith(".json"))
    assert result.ran, f"nft dry run could not run: {result.message}"
    assert result.ok, result.message


def test_ruleset_md_shows_schedules_as_the_golden_prints_them():
    """docs/ruleset.md's schedule matches are lines of golden/schedules, word for word."""
    docs = " ".join((GOLDEN.parent / "docs" / "ruleset.md").read_text().split())
    shown = re.findall(r"meta day \{[^}]*\}(?: meta hour [0-9]+-[0-9]+)?", docs)
    printed = (GOLDEN / "schedules" / "expected.nft").read_text()
    assert shown and all(match in printed for match in shown), shown
