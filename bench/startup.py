#!/usr/bin/env python3
"""Benchmark: how long a small policy takes, start to finish.

    /path/to/venv/bin/python bench/startup.py [RUNS ...]    (default: 10)

Runs the `mailpubc` entry point installed beside the Python running this
script (so a scratch `pip install .` measures as a user's installation,
not an editable checkout) on examples/seed.yaml, RUNS times after one run
that writes the caches, and prints the median, the fastest and the slowest
wall time of:

- `check` (its nft dry run included): start-up is most of it;
- `compile --no-nft-check`, the compiled templates kept (as installed, after
  the first run), and compiled in every run (their cache removed and not
  written), which is what the cache saves.

PYTHONDONTWRITEBYTECODE is left out of the runs' environment: with it,
every run would compile the package from source, as no installed tool does.
Nothing here asserts anything: it prints figures.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mailpubc.datafiles import cache_folder
import sizes

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seed.yaml"
WRITING = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str], keep_templates: bool) -> float:
    if not keep_templates:
        shutil.rmtree(cache_folder("templates") or "", ignore_errors=True)
    environment = WRITING if keep_templates else {**WRITING, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=environment)
    return time.perf_counter() - start


def report(what: str, command: list[str], runs: int, keep_templates: bool = True) -> None:
    timed(command, keep_templates=True)
    times = sorted(timed(command, keep_templates) for _ in range(runs))
    print(f"{what}, {runs} runs: median {statistics.median(times):.3f} s, "
          f"{times[0]:.3f}-{times[-1]:.3f} s")


def main() -> None:
    entry_point = os.path.join(os.path.dirname(sys.executable), "mailpubc")
    compile_text = [entry_point, "compile", "--no-nft-check", str(EXAMPLE)]
    for runs in sizes.from_command_line(__doc__, [10], metavar="RUNS"):
        print(f"{entry_point} on {EXAMPLE.name}")
        report("check", [entry_point, "check", str(EXAMPLE)], runs)
        report("compile --no-nft-check, templates kept", compile_text, runs)
        report("compile --no-nft-check, templates compiled each run", compile_text, runs,
               keep_templates=False)


if __name__ == "__main__":
    main()
