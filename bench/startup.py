#!/usr/bin/env python3
"""Benchmark: how long `mailpubc check examples/seed.yaml` takes, start to finish.

    /path/to/venv/bin/python bench/startup.py [RUNS ...]    (default: 10)

Runs the `mailpubc` entry point installed beside the Python running this
script (so a scratch `pip install .` measures as a user's installation,
not an editable checkout), its nft dry run included, RUNS times after one
run that writes Python's and the templates' caches, and prints the median,
the fastest and the slowest wall time. Start-up is most of it: the example
is small. Nothing here asserts anything: it prints figures.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sizes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed.yaml"


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    entry_point = os.path.join(os.path.dirname(sys.executable), "mailpubc")
    command = [entry_point, "check", str(EXAMPLE)]
    for runs in sizes.from_command_line(__doc__, [10], metavar="RUNS"):
        timed(command)
        times = sorted(timed(command) for _ in range(runs))
        print(f"{entry_point} check {EXAMPLE.name}, {runs} runs: median "
              f"{statistics.median(times):.3f} s, {times[0]:.3f}-{times[-1]:.3f} s")


if __name__ == "__main__":
    main()
