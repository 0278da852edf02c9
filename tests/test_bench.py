"""The benchmark runs: bench/run.py at a tiny size, without Aerleon, so that
it cannot rot, and every script's --help. It prints figures; nothing here
looks at a time."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(path.name for path in (ROOT / "bench").glob("*.py")
                 if 'if __name__ == "__main__":' in path.read_text())


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_a_wrong_size_is_a_usage_error(script):
    """--help (without root, measuring nothing) and a size that is not a
    number: argparse's usage, exit 0 and 2, no traceback."""
    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    shown = run("--help")
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    assert shown.stdout.startswith(f"usage: {script}"), shown.stdout
    wrong = run("--sizes" if script == "run.py" else "", "many")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr
    assert wrong.stderr.startswith(f"usage: {script}"), wrong.stderr


def test_benchmark_prints_its_table_at_a_tiny_size():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", "60,120",
                          "--runs", "1", "--no-aerleon"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    for row in ("### N = 60", "### N = 120", "| floor (PyYAML C load) |",
                "| mailpubc --no-nft-check |", "| mailpubc |", "- growth 60 -> 120"):
        assert row in run.stdout, run.stdout
    rules = [line.split("|")[-2].strip() for line in run.stdout.splitlines()
             if line.startswith("| mailpubc")]
    assert rules and all(int(count) > 0 for count in rules)     # the output was a ruleset


def test_publications_benchmark_walk_does_not_grow():
    """bench/publications.py at two small sizes above the threshold: the
    rules a new connection walks are the same for both (counts, not times)."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "publications.py"), "20", "40"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    rows = {tuple(cells[1:3]): cells[3:5] for line in run.stdout.splitlines()
            if line.startswith("| ") and (cells := [c.strip() for c in line.split("|")])[1].isdigit()}
    assert rows[("20", "dispatch")] == rows[("40", "dispatch")], run.stdout
    assert rows[("20", "one rule a pair")] != rows[("40", "one rule a pair")], run.stdout
