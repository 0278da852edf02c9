"""The benchmark runs: bench/run.py at a tiny size, without Aerleon, so that
it cannot rot. It prints figures; nothing here looks at a time."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
