"""Compiled templates are kept between runs (generate.text.CompiledTemplates,
issue #12): a kept one is used, and a cache that is damaged, stale, not
writable or not to be written never changes the ruleset nor stops it."""

import os
import sys
from pathlib import Path

import pytest

from mailpubc.api import compile_path
from mailpubc.generate import text

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "golden" / "set-defines" / "policy.yaml"   # defines, sets, rules: every macro
EXPECTED = (ROOT / "golden" / "set-defines" / "expected.nft").read_text()


@pytest.fixture(scope="module")
def ruleset():
    return compile_path(str(POLICY)).or_raise().ruleset


@pytest.fixture(autouse=True)
def bytecode_written(monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def render(cache, ruleset) -> str:
    """As a new run does: a new environment on the cache folder."""
    folder = None if cache is None else str(cache)
    return text.environment(folder).get_template("ruleset.nft.j2").render(ruleset=ruleset)


def kept(cache: Path) -> dict[str, int]:
    return {entry.name: entry.stat().st_ino for entry in cache.iterdir()}


def test_a_second_run_uses_what_the_first_kept(tmp_path, ruleset):
    cache = tmp_path / "__pycache__"
    assert render(cache, ruleset) == EXPECTED
    first = kept(cache)
    assert len(first) == 2                     # ruleset.nft.j2 and the rule macros it imports
    assert render(cache, ruleset) == EXPECTED
    assert kept(cache) == first                # read, not compiled and written again


@pytest.mark.parametrize("damage", [b"", b"garbage", None])
def test_a_damaged_entry_is_compiled_again(tmp_path, ruleset, damage):
    cache = tmp_path / "__pycache__"
    render(cache, ruleset)
    for entry in cache.iterdir():
        data = entry.read_bytes()
        # None: the header intact, the code cut short
        entry.write_bytes(data[:len(data) // 2] if damage is None else damage)
    assert render(cache, ruleset) == EXPECTED
    assert render(cache, ruleset) == EXPECTED
    assert all(entry.stat().st_size > 1000 for entry in cache.iterdir())   # written anew


def test_an_entry_of_another_template_source_is_not_used(tmp_path, ruleset):
    """The cache is keyed by template name; Jinja2 also checks the source."""
    cache = tmp_path / "__pycache__"
    other = text.environment(str(cache))
    other.loader = type(other.loader)(lambda name: "not the ruleset {{ ruleset.table }}\n")
    rendered = other.get_template("ruleset.nft.j2").render(ruleset=ruleset)
    assert rendered == "not the ruleset mailpub\n"
    assert render(cache, ruleset) == EXPECTED


def test_a_cache_that_cannot_be_written_is_passed_over(tmp_path, ruleset):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert render(blocked / "__pycache__", ruleset) == EXPECTED
    assert render(None, ruleset) == EXPECTED


def test_dont_write_bytecode_writes_none(tmp_path, ruleset, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache = tmp_path / "__pycache__"
    assert render(cache, ruleset) == EXPECTED
    assert not cache.exists()
    assert not os.listdir(tmp_path)
