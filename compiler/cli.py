"""The `mailpubc` command: a thin layer over `mailpubc.api` and `mailpubc.nft`.

    mailpubc [compile] [-o FILE] [--format nft|json] [--no-nft-check] POLICY
    mailpubc check [--strict] [--no-nft-check] POLICY...
    mailpubc explain [--format text|json] [--at "YYYY-MM-DD HH:MM"] POLICY --from ADDR --to ADDR:PORT[/PROTO]

POLICY `-` is standard input. Exit status: 0 done; 1 the policy is invalid
(each problem on stderr as FILE:LINE:COL: error: MESSAGE, nothing on stdout),
or has warnings under `check --strict`; 2 wrong usage; 3 an internal error,
such as nft rejecting what the compiler wrote (a bug).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from importlib import metadata

from . import api
from . import nft
from .generate import UnsafeText

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
COMMANDS = ("compile", "check", "explain")


class InternalError(Exception):
    """The compiler wrote something it should not have: a bug, not bad input."""


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpubc",
        description="Compile a mail-publishing policy into an nftables ruleset. "
                    "`mailpubc POLICY` is `mailpubc compile POLICY`.")
    parser.add_argument("--version", action="version", version=f"mailpubc {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    compile_ = commands.add_parser("compile", help="compile POLICY (the default command)",
                                   description="Compile POLICY; the ruleset goes to stdout.")
    compile_.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    compile_.add_argument("-o", "--output", metavar="FILE",
                          help="write the ruleset to FILE (atomically) instead of stdout")
    compile_.add_argument("--format", choices=("nft", "json"), default="nft",
                          help="nft text (default) or libnftables JSON (nft -j -f)")
    compile_.add_argument("--no-nft-check", action="store_true",
                          help="skip the nft dry run of the generated ruleset")
    compile_.set_defaults(run=_compile)

    check = commands.add_parser("check", help="validate policies (pre-commit passes many)",
                                description="Validate policy files; exit 1 if any is invalid.")
    check.add_argument("policies", nargs="+", metavar="POLICY")
    check.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    check.add_argument("--no-nft-check", action="store_true",
                       help="skip the nft dry run of the generated rulesets")
    check.set_defaults(run=_check)
    _add_explain(commands)
    return parser


def _add_explain(commands) -> None:
    explain = commands.add_parser(
        "explain", help="which rule decides a new connection",
        description="Which policy rule decides a new connection from ADDR to ADDR:PORT, "
                    "the chains it passes, its translation and its verdict.")
    explain.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    explain.add_argument("--from", dest="source", required=True, metavar="ADDR",
                         help="the client: an address, or localhost (the firewall itself)")
    explain.add_argument("--to", dest="target", required=True, metavar="ADDR:PORT[/PROTO]",
                         help="[ADDR]:PORT for IPv6; PROTO tcp (default) or udp; ADDR/icmp: ping")
    explain.add_argument("--at", metavar="YYYY-MM-DD HH:MM",
                         help="the time, in the policy's time zone (default now)")
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.set_defaults(run=_explain)


def _version() -> str:
    try:
        return metadata.version("mailpubc")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _report(result: api.Result) -> None:
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)


def _output(result: api.Result, output_format: str, nft_check: bool) -> tuple[str, object]:
    """The ruleset in `output_format` and, if asked, its dry run; raise on failure."""
    try:
        text = result.json_text if output_format == "json" else result.text
    except UnsafeText as exc:
        raise InternalError(f"refused to print unsafe text: {exc}") from exc
    if not nft_check:
        return text, None
    checked = nft.dry_run(text, json=output_format == "json")
    if checked.ran and not checked.ok:
        raise InternalError("nft rejected the generated ruleset "
                            f"({checked.method}); please report this:\n{checked.message}")
    return text, checked


def _note_unchecked(checked) -> None:
    if checked is not None and not checked.ran:
        print(f"mailpubc: note: nft dry run not run: {checked.message}", file=sys.stderr)


def _write_atomically(path: str, text: str) -> None:
    """Temporary file in the same folder, then rename: never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".mailpubc-", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        os.unlink(temporary)
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def _compile(args: argparse.Namespace) -> int:
    result = api.compile_path(args.policy)
    _report(result)
    if not result.ok:
        return EXIT_INVALID
    text, checked = _output(result, args.format, not args.no_nft_check)
    _note_unchecked(checked)
    if args.output:
        _write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.policies:
        result = api.compile_path(path)
        _report(result)
        if not result.ok or (args.strict and result.warnings):
            status = EXIT_INVALID
            continue
        _, checked = _output(result, "nft", not args.no_nft_check)
        if checked is None:
            print(f"{path}: ok (nft dry run skipped)")
        elif checked.ran:
            print(f"{path}: ok (nft dry run passed: {checked.method})")
        else:
            print(f"{path}: ok, but the nft dry run could not run: {checked.message}")
    return status


def _explain(args: argparse.Namespace) -> int:
    from datetime import datetime

    from . import explain
    at = None
    if args.at is not None:
        try:
            at = datetime.strptime(args.at, "%Y-%m-%d %H:%M")
        except ValueError as exc:
            raise UsageError(f"--at {args.at!r}: expected YYYY-MM-DD HH:MM") from exc
    result = api.compile_path(args.policy)
    _report(result)
    if not result.ok:
        return EXIT_INVALID
    try:
        destination, protocol = explain.parse_target(args.target)
        answer = explain.explain(result, args.source, destination, protocol, at)
    except explain.QueryError as exc:
        raise UsageError(str(exc)) from exc
    except explain.ExplainError as exc:
        raise InternalError(str(exc)) from exc
    if args.format == "json":
        sys.stdout.write(json.dumps(answer.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(answer.text())
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "compile")    # `mailpubc POLICY` compiles
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"mailpubc: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InternalError as exc:
        print(f"mailpubc: internal error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # no traceback for users; MAILPUBC_DEBUG=1 shows it
        if os.environ.get("MAILPUBC_DEBUG"):
            raise
        print(f"mailpubc: internal error: {type(exc).__name__}: {exc} "
              "(run with MAILPUBC_DEBUG=1 for details, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL
