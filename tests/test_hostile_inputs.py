"""Hostile inputs: files that cannot be committed (alias bombs, 10,000-deep
nesting, 100 MB, bytes that are not UTF-8), built at run time from the
recipes of tests/hostile_inputs.yaml (which says what each must give) and
run through the real CLI under a memory limit and a timeout that kills it.
The bad inputs that can be committed are cases in golden/ (tests/test_cases.py).
"""

from __future__ import annotations

import os
import re
import resource
from pathlib import Path

import pytest
import yaml

from cli import run_mailpubc

ROOT = Path(__file__).resolve().parent.parent
RECIPES = yaml.safe_load((ROOT / "tests" / "hostile_inputs.yaml").read_text(encoding="utf-8"))
MEMORY_LIMIT = 512 * 1024 * 1024     # address space of the CLI process
TIME_LIMIT = 60                      # seconds before the CLI is killed


def build(recipe: dict) -> bytes | int:
    """The file's bytes from its recipe (or, for `size`, its length in bytes)."""
    if "bytes" in recipe:
        return recipe["bytes"].encode("latin-1")
    if "text" in recipe:
        return recipe["text"].encode(recipe["encoding"])
    if "alias_bomb" in recipe:
        width, depth = recipe["alias_bomb"]["width"], recipe["alias_bomb"]["depth"]
        lines = ["version: 1", "a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
                  for i in range(1, depth)]
        return ("\n".join(lines) + "\n").encode()
    if "nest" in recipe:
        nest = recipe["nest"]
        return ("version: 1\n" + nest.get("head", "x: ") + nest["open"] * nest["depth"] + "1"
                + nest["close"] * nest["depth"] + "\n").encode()
    if "size" in recipe:
        return recipe["size"]["megabytes"] * 1024 * 1024
    raise ValueError(f"unknown recipe: {recipe}")


def _limits() -> None:
    """In the child: cap memory, and CPU as a second line behind the timeout."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (TIME_LIMIT, TIME_LIMIT))


def _environment() -> dict:
    """This checkout's compiler, and no MAILPUBC_DEBUG (which shows tracebacks)."""
    env = {k: v for k, v in os.environ.items() if k != "MAILPUBC_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _generated(name: str):
    recipe = RECIPES[name]
    marks = [pytest.mark.xfail(strict=True, reason=recipe["xfail"])] if "xfail" in recipe else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_generated(n) for n in RECIPES])
def test_hostile_input_ends_cleanly_within_limits(name, tmp_path):
    recipe = RECIPES[name]
    path = tmp_path / f"{name}.yaml"
    content = build(recipe)
    if isinstance(content, int):      # sparse: a policy's start, then holes
        path.write_bytes(b"version: 1\nfirewall:\n")
        with open(path, "r+b") as stream:
            stream.truncate(content)
    else:
        path.write_bytes(content)
    run = run_mailpubc(path.name, cwd=tmp_path, errors="replace", timeout=TIME_LIMIT,
                       preexec_fn=_limits, env=_environment())
    assert "Traceback" not in run.stderr
    assert re.fullmatch(recipe["expect"], run.stderr), run.stderr
    assert (run.returncode, run.stdout) == (1, "")
