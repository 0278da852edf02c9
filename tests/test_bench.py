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
