#!/usr/bin/env python3
"""Regenerate what the command line prints for golden/<case>/policy.yaml:
expected.nft, expected.json (and expected.warn when it warns), or
expected.err. A case that holds only warnings (expected.warn), a plan or
explanations (plan.yaml, explain.yaml: tests/test_cases.py) gets no
rulesets: its warnings only, or its errors once its policy is refused.

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


OUTPUTS = ("expected.nft", "expected.json", "expected.warn", "expected.err")


def _expects_rulesets(case: Path) -> bool:
    """A new case, or one that holds a ruleset or errors (rather than only
    warnings, a plan or explanations)."""
    held = {name for name in (*OUTPUTS, "plan.yaml", "explain.yaml") if (case / name).exists()}
    return not held or bool(held & {"expected.nft", "expected.err"})


def regenerate(case: Path) -> str:
    """expected.nft and expected.json (and its warnings) for a valid policy
    of a case that expects rulesets, expected.err for an invalid one."""
    rulesets = _expects_rulesets(case)
    status, out, err = _run(case)
    if status == 0:
        expected = {"expected.warn": err} if err and (
            rulesets or (case / "expected.warn").exists()) else {}
        if rulesets:
            _, json_out, _ = _run(case, "--format", "json")
            expected.update({"expected.nft": out, "expected.json": json_out})
    elif status == 1:
        expected = {"expected.err": err}
    else:
        raise SystemExit(f"{case.name}: mailpubc exited {status}:\n{err}")
    changed = []
    for name in OUTPUTS:
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
