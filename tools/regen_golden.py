#!/usr/bin/env python3
"""Regenerate golden/<case>/expected.nft or expected.err from policy.yaml.

Golden files are a contract: run this only after a deliberate change, then
read `git diff golden/` line by line before committing it.

    .venv/bin/python tools/regen_golden.py            # every case
    .venv/bin/python tools/regen_golden.py CASE...    # some cases
"""

import contextlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from mailpubc.cli import main as mailpubc  # the installed package (.venv)


def regenerate(case: Path) -> str:
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(case)   # diagnostics then name the file as "policy.yaml"
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = mailpubc(["policy.yaml"])
    finally:
        os.chdir(cwd)
    if status == 0:
        keep, drop, text = "expected.nft", "expected.err", stdout.getvalue()
    elif status == 1:
        keep, drop, text = "expected.err", "expected.nft", stderr.getvalue()
    else:
        raise SystemExit(f"{case.name}: mailpubc exited {status}:\n{stderr.getvalue()}")
    (case / drop).unlink(missing_ok=True)
    target = case / keep
    changed = not target.exists() or target.read_text(encoding="utf-8") != text
    target.write_text(text, encoding="utf-8")
    return f"{case.name}: {keep}{' (changed)' if changed else ''}"


def main(names: list[str]) -> int:
    cases = [ROOT / "golden" / n for n in names] if names else sorted(
        p for p in (ROOT / "golden").iterdir() if (p / "policy.yaml").exists())
    for case in cases:
        print(regenerate(case))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
