"""The house a newcomer reads (issue #19): modules of at most 400 lines,
functions of at most 40 unless docs/internals.md says why, no import cycle
(tools/layout.py), and every package of the code installed."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import layout  # noqa: E402


def test_modules_functions_and_imports_keep_the_house_rules():
    assert layout.breaches() == []


def test_the_checker_finds_a_cycle():
    """So that the test above can fail on one."""
    graph = {"mailpubc.a": {"mailpubc.b"}, "mailpubc.b": {"mailpubc.a"}, "mailpubc.c": set()}
    assert layout.cycles(graph) == [["mailpubc.a", "mailpubc.b", "mailpubc.a"]]


def test_every_package_of_the_code_is_installed():
    """pyproject lists packages by hand: a new one missing would install a
    mailpubc without it (as the cli package once was)."""
    listed = set(re.findall(r'"(mailpubc[\w.]*)"', re.search(
        r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)))
    packages = {layout.module_name(init) for init in (ROOT / "compiler").rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)
