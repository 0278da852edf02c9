"""Property tests (hypothesis): the compiler on policies it has never seen.

- every valid policy compiles to the same bytes twice (in one process, and
  across processes with different hash seeds), and on the kernel, drawn
  once for all of it: nft's dry run accepts the result, its text and its
  JSON load to the same listing, that listing is fail-closed
  (tests/failclosed.py), and the same holds with every publication pair
  dispatched (that dispatch changes no answer: tests/test_dispatch.py);
- every mutated policy either compiles (and nft accepts it) or fails with
  positioned one-line diagnostics, in process and through the real CLI.

Examples per property come from the hypothesis profile (tests/conftest.py):
500 in CI, `HYPOTHESIS_PROFILE=long` for 20000. The CLI and cross-process
checks start processes, so they run on a smaller sample of the same draws.
"""

from __future__ import annotations

import itertools
import os
import re
import string
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import failclosed
from kernel import loaded_alike
from mailpubc import nft
from mailpubc.diagnostics import PolicyError
from mailpubc.api import compile_path
from mailpubc.generate import UnsafeText
from mailpubc.datafiles import nft_keywords
from cli import run_mailpubc
from strategies import TABLE_WORDS, dispatched, mutants, policies, policy_file

ROOT = Path(__file__).resolve().parent.parent
PROCESS_SAMPLE = max(30, settings().max_examples // 16)
# Big composite draws: generating one takes longer than hypothesis expects.
SLOW_DRAWS = [HealthCheck.too_slow, HealthCheck.data_too_large]


def assert_clean_diagnostics(lines: list[str], path: str, text: str, severity: str = "error") -> None:
    """Each line is FILE:LINE:COL: SEVERITY: MESSAGE, pointing inside the file."""
    assert lines or severity == "warning", "an invalid policy must say why"
    source = text.split("\n")
    pattern = re.compile(rf"^{re.escape(path)}:(\d+):(\d+): {severity}: .+$")
    for line in lines:
        match = pattern.fullmatch(line)
        assert match, f"not a diagnostic: {line!r}"
        row, col = int(match.group(1)), int(match.group(2))
        assert 1 <= row <= len(source), f"line {row} is outside the file: {line!r}"
        assert 1 <= col <= len(source[row - 1]) + 1, f"column {col} is outside line {row}: {line!r}"


def _in_process(text: str) -> None:
    """Compile `text`: either nft accepts the result, or the errors are clean."""
    with policy_file(text) as path:
        try:
            compiled = compile_path(path).or_raise()
        except UnsafeText as error:
            raise AssertionError(f"the renderer refused what the checks passed: {error}")
        except PolicyError as error:
            assert_clean_diagnostics([str(d) for d in error.diagnostics], path, text)
            return
    result = nft.dry_run(compiled.text)
    assert result.ran, f"nft dry run could not run: {result.message}"
    assert result.ok, f"nft rejects what the compiler accepted:\n{result.message}\n{compiled.text}"


@pytest.mark.usefixtures("namespaces_work")
@settings(suppress_health_check=SLOW_DRAWS)
@given(policies())
def test_valid_policy_compiles_alike_loads_alike_and_fails_closed(draw):
    with policy_file(draw.text) as path:
        first = compile_path(path).or_raise()      # a PolicyError here is a compiler bug
        second = compile_path(path).or_raise()
    assert first.text == second.text
    assert first.policy.firewall.table == draw.data["firewall"].get("table", "mailpub")
    result = nft.dry_run(first.text)
    assert result.ran, f"nft dry run could not run: {result.message}"
    assert result.ok, f"nft rejects a valid policy's ruleset:\n{result.message}\n{first.text}"
    assert failclosed.check(loaded_alike(first), first.policy) == []
    maps = dispatched(draw.text)
    if maps.text != first.text:         # no publication pair: nothing to dispatch
        assert failclosed.check(loaded_alike(maps), maps.policy) == []


@settings(max_examples=max(3, PROCESS_SAMPLE // 10), suppress_health_check=SLOW_DRAWS)
@given(st.lists(policies(), min_size=10, max_size=10))
def test_same_bytes_across_processes_and_hash_seeds(draws):
    """Python randomises str hashes per process: set order must not leak into the output."""
    with tempfile.TemporaryDirectory(prefix="mailpubc-prop-") as folder:
        paths = []
        for i, draw in enumerate(draws):
            paths.append(os.path.join(folder, f"p{i}.yaml"))
            Path(paths[-1]).write_text(draw.text, encoding="utf-8")
        script = ("import sys\nfrom mailpubc.api import compile_path\n"
                  "for p in sys.argv[1:]: sys.stdout.write(compile_path(p).or_raise().text + '\\0')\n")
        outputs = []
        for seed in ("1", "4242"):
            run = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True,
                                 text=True, timeout=120, cwd=ROOT,
                                 env={**os.environ, "PYTHONHASHSEED": seed})
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout)
        assert outputs[0] == outputs[1]
        assert outputs[0] == "".join(compile_path(p).or_raise().text + "\0" for p in paths)


@settings(suppress_health_check=SLOW_DRAWS)
@given(mutants())
def test_mutated_policy_compiles_or_fails_cleanly(mutant):
    _in_process(mutant.text)


@settings(max_examples=PROCESS_SAMPLE, suppress_health_check=SLOW_DRAWS)
@given(mutants())
def test_cli_on_mutated_policy_exits_0_or_1_with_clean_output(mutant):
    with policy_file(mutant.text) as path:
        run = run_mailpubc(path, cwd=ROOT)
    assert "Traceback" not in run.stderr
    assert run.returncode in (0, 1), f"exit {run.returncode}: {run.stderr}"
    if run.returncode == 0:
        assert run.stdout.startswith("# Generated by mailpubc")
        assert_clean_diagnostics(run.stderr.splitlines(), path, mutant.text, "warning")
    else:
        assert run.stdout == ""
        assert_clean_diagnostics(run.stderr.splitlines(), path, mutant.text)


def _refused_by_nft(words: list[str]) -> set[str]:
    """The words nft refuses as a table name in the three places the ruleset
    names its table: one line a word, 200 lines a dry run. After a refused
    word the scanner may stay in that word's state (after `ct`, `daddr` is a
    keyword too), so only a run's first error counts and the next run starts
    on the line after it (as in tools/gen_nft_keywords.py)."""
    refused: set[str] = set()
    start = 0
    while start < len(words):
        rest = words[start:start + 200]
        result = nft.dry_run("".join(
            f"table inet {w}; delete table inet {w}; table inet {w} {{ }}\n" for w in rest))
        assert result.ran, result.message
        if result.ok:
            start += len(rest)
            continue
        lines = [int(n) for n in re.findall(r"^\S+?\.nft:(\d+):", result.message, re.M)]
        assert lines, result.message
        refused.add(rest[min(lines) - 1])
        start += min(lines)
    return refused


def test_nft_refuses_exactly_the_table_names_the_compiler_refuses():
    """Over the keyword list, the strategy's table words and every word of one
    to three letters (where the scanner's spelled operators such as `and` and
    `eq` live): a name missing from the list crashes the compiler on nft's
    refusal, a name wrongly in it is a wrong 'is an nft keyword' error."""
    short = ("".join(letters) for length in (1, 2, 3)
             for letters in itertools.product(string.ascii_lowercase, repeat=length))
    words = sorted(set(short) | nft_keywords() | set(TABLE_WORDS))
    assert _refused_by_nft(words) == nft_keywords()


@settings(suppress_health_check=SLOW_DRAWS)
@given(mutants())
def test_fast_list_validation_reports_what_jsonschema_reports(mutant):
    """schema.py skips jsonschema for list items that are strings of the
    right format; on any document it must find exactly what the plain
    draft 2020-12 validator finds."""
    from jsonschema import Draft202012Validator
    from mailpubc import loader, schema

    try:
        document = loader.parse("policy.yaml", mutant.text.encode())
    except PolicyError:
        return
    fast = schema._validator()
    plain = Draft202012Validator(fast.schema, format_checker=fast.format_checker)

    def found(validator):
        return sorted((tuple(map(str, e.absolute_path)), e.message)
                      for e in validator.iter_errors(document.data))
    assert found(fast) == found(plain)
