"""`mailpubc explain`: the command line around the library, and the library
on what no case can hold. The library's answers are the explain.yaml of the
cases in golden/ (tests/test_cases.py); the end-to-end suite holds explain to
the kernel (tests/e2e/agreement.py).
"""

import dataclasses
import json
import re
import shlex
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import pytest

from cli import run_mailpubc
from mailpubc import explain as explain_module
from mailpubc.api import compile_path
from mailpubc.evaluate import UnjudgedKind
from mailpubc.explain import explain
from mailpubc.plan import Origin, Rule

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples/seed.yaml"


def test_cli_json_is_the_library_answer():
    run = run_mailpubc("explain", "--format", "json", EXAMPLE,
                       "--from", "192.0.2.100", "--to", "198.51.100.10:25", cwd=ROOT)
    assert run.returncode == 0, run.stderr
    expected = explain(compile_path(str(ROOT / EXAMPLE)), "192.0.2.100", "198.51.100.10:25")
    assert json.loads(run.stdout) == dict(expected.to_json(), position="examples/seed.yaml:30:11")


def test_readme_shows_the_real_output():
    """Each `$ mailpubc explain ...` block of the README is what the command prints."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```\n\$ mailpubc (explain [^\n]*)\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for command, shown in blocks:
        run = run_mailpubc(*shlex.split(command), cwd=ROOT)
        assert run.returncode == 0, run.stderr
        assert run.stdout == shown, command


@pytest.mark.parametrize("args", [
    ["--from", "not-an-address", "--to", "198.51.100.10:25"],
    ["--from", "192.0.2.1", "--to", "198.51.100.10"],                  # no port
    ["--from", "192.0.2.1", "--to", "198.51.100.10:70000"],
    ["--from", "192.0.2.1", "--to", "198.51.100.10:25/sctp"],
    ["--from", "192.0.2.1", "--to", "2001:db8::1:25"],                 # IPv6 needs [ADDR]:PORT
    ["--from", "192.0.2.1", "--to", "[2001:db8:100::10]:25"],          # families differ
    ["--at", "2026-02-30 10:00", "--from", "192.0.2.1", "--to", "198.51.100.10:25"],
    ["--from", "192.0.2.1"],
])
def test_bad_question_is_usage_exit_2(args):
    run = run_mailpubc("explain", EXAMPLE, *args, cwd=ROOT)
    assert run.returncode == 2, run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr


def test_invalid_policy_exits_1_with_positioned_errors():
    policy = "golden/err-unknown-key/policy.yaml"
    run = run_mailpubc("explain", policy, "--from", "192.0.2.1", "--to", "198.51.100.10:25",
                       cwd=ROOT)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith(f"{policy}:") and ": error: " in run.stderr


@dataclasses.dataclass(frozen=True)
class _NewMatch:
    kind: ClassVar[str] = "not-yet-known"


@pytest.mark.parametrize("matches,statements,message", [
    ((_NewMatch(),), (), "match kind 'not-yet-known'.*MATCHES"),
    ((), (_NewMatch(),), "statement kind 'not-yet-known'.*STATEMENTS"),
])
def test_unknown_kind_is_a_clear_error(matches, statements, message):
    """Other work adds kinds: explain must refuse one it cannot judge, not guess."""
    result = compile_path(str(ROOT / EXAMPLE))
    chains = result.ruleset.chains
    odd = dataclasses.replace(chains[1], rules=(Rule(Origin("fixed", "odd"), matches, statements),))
    ruleset = dataclasses.replace(result.ruleset, chains=(chains[0], odd, *chains[2:]))
    with pytest.raises(UnjudgedKind, match=message):
        explain_module.Explainer(ruleset, datetime.now().astimezone())
