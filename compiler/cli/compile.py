"""`mailpubc [compile]` and `mailpubc check`: the policy to a ruleset, and the
validation pre-commit runs."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Optional

from ..diagnostics import ExitCode, UsageError
from ..semantics import unknown_users
from .common import Exit, InternalError, compiled, compiled_or_exit, emit, netns_name, say, warn

if TYPE_CHECKING:
    from ..api import Result


def add(commands) -> None:
    compile_ = commands.add_parser("compile", help="compile POLICY (the default command)",
                                   description="Compile POLICY; the ruleset goes to stdout.")
    compile_.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    compile_.add_argument("-o", "--output", metavar="FILE",
                          help="write the ruleset to FILE (atomically) instead of stdout")
    compile_.add_argument("--format", choices=("nft", "json"), default="nft",
                          help="nft text (default) or libnftables JSON (nft -j -f)")
    compile_.add_argument("--no-nft-check", action="store_true",
                          help="skip the nft dry run of the generated ruleset")
    compile_.set_defaults(run=compile_policy)

    check = commands.add_parser("check", help="validate policies (pre-commit passes many)",
                                description="Validate policy files; exit 1 if any is invalid.")
    check.add_argument("policies", nargs="+", metavar="POLICY")
    check.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    check.add_argument("--no-nft-check", action="store_true",
                       help="skip the nft dry run of the generated rulesets")
    check.add_argument("--live", action="store_true",
                       help="also warn about other tables whose base chains drop what "
                            "the policy accepts (reads the live ruleset)")
    check.add_argument("--netns", metavar="NS", type=netns_name,
                       help="with --live: the network namespace to read")
    check.set_defaults(run=check_policies)


def _output(result: Result, output_format: str, nft_check: bool) -> tuple[str, object]:
    """The ruleset in `output_format` and, if asked, its dry run; raise on failure."""
    from .. import nft
    from ..generate import UnsafeText
    try:
        text = result.json_text if output_format == "json" else result.text
    except UnsafeText as exc:
        raise InternalError(f"refused to print unsafe text: {exc}") from exc
    if not nft_check:
        return text, None
    checked = nft.dry_run(text, json=output_format == "json")
    if checked.ran and not checked.ok and unknown_users(result.policy):
        say(f"error: nft cannot load this ruleset on this host, which lacks a user the "
            f"policy names (see the warning):\n{checked.message}")
        raise Exit(ExitCode.INVALID)
    if checked.ran and not checked.ok:
        raise InternalError("nft rejected the generated ruleset "
                            f"({checked.method}); please report this:\n{checked.message}")
    return text, checked


def compile_policy(args: argparse.Namespace) -> int:
    result = compiled_or_exit(args.policy)
    text, checked = _output(result, args.format, not args.no_nft_check)
    if checked is not None and not checked.ran:
        print(f"mailpubc: note: nft dry run not run: {checked.message}", file=sys.stderr)
    emit(text, args.output)
    return ExitCode.OK


def check_policies(args: argparse.Namespace) -> int:
    """Each policy in turn: an invalid one is reported and the rest still checked."""
    status = ExitCode.OK
    for path in args.policies:
        result = compiled(path)
        if not result.ok or (args.strict and result.warnings):
            status = ExitCode.INVALID
            continue
        # The JSON form needs no jinja2, so `check` starts fast; the text form
        # is dry-run by `compile`, and tests/test_generators.py holds both to
        # the same kernel listing.
        _, checked = _output(result, "json", not args.no_nft_check)
        found = _live_warnings(result, args.netns) if args.live else []
        print(f"{path}: {_checked_text(checked)}")
        warn(found)
        if args.strict and found:
            status = ExitCode.INVALID
    return status


def _checked_text(checked: Optional[object]) -> str:
    if checked is None:
        return "ok (nft dry run skipped)"
    if checked.ran:
        return f"ok (nft dry run passed: {checked.method})"
    return f"ok, but the nft dry run could not run: {checked.message}"


def _live_warnings(result: Result, netns: Optional[str]) -> list[str]:
    """check --live's warnings, read before `check` prints its "ok": a live
    ruleset it cannot read (no such namespace) is a usage error, no output."""
    from .. import bridges, deploy, nft
    try:
        return (deploy.live_warnings(result.ruleset.table, netns)
                + bridges.warnings(result.policy.firewall, netns))
    except nft.NftError as exc:
        raise UsageError(f"cannot read the live ruleset: {exc}") from exc
