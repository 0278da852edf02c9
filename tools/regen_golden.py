#!/usr/bin/env python3
"""Regenerate golden/<case>/expected.nft, expected.json (and expected.warn when it warns),
or expected.err, from policy.yaml.

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


def _run(case: Path, *args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(case)   # diagnostics then name the file as "policy.yaml"
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = mailpubc([*args, "policy.yaml"])
    finally:
        os.chdir(cwd)
    return status, stdout.getvalue(), stderr.getvalue()


def regenerate(case: Path) -> str:
    """expected.nft and expected.json (and its warnings) for a valid policy,
    expected.err for an invalid one."""
    status, out, err = _run(case)
    if status == 0:
        _, json_out, _ = _run(case, "--format", "json")
        expected = {"expected.nft": out, "expected.json": json_out}
        if err:
            expected["expected.warn"] = err
    elif status == 1:
        expected = {"expected.err": err}
    else:
        raise SystemExit(f"{case.name}: mailpubc exited {status}:\n{err}")
    changed = []
    for name in ("expected.nft", "expected.json", "expected.warn", "expected.err"):
        target = case / name
        if name not in expected:
            target.unlink(missing_ok=True)
            continue
        if not target.exists() or target.read_text(encoding="utf-8") != expected[name]:
            changed.append(name)
        target.write_text(expected[name], encoding="utf-8")
    return f"{case.name}: {', '.join(expected)}{' (changed: ' + ', '.join(changed) + ')' if changed else ''}"


def main(names: list[str]) -> int:
    cases = [ROOT / "golden" / n for n in names] if names else sorted(
        p for p in (ROOT / "golden").iterdir() if (p / "policy.yaml").exists())
    for case in cases:
        print(regenerate(case))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
