"""The `mailpubc` command: a thin layer over `mailpubc.api` and `mailpubc.nft`.

    mailpubc [compile] [-o FILE] [--format nft|json] [--no-nft-check] POLICY
    mailpubc check [--strict] [--no-nft-check] POLICY...
    mailpubc install-unit [--prefix DIR]

POLICY `-` is standard input. Exit status: 0 done; 1 the policy is invalid
(each problem on stderr as FILE:LINE:COL: error: MESSAGE, nothing on stdout),
or has warnings under `check --strict`; 2 wrong usage; 3 an internal error,
such as nft rejecting what the compiler wrote (a bug).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from . import api
from . import nft
from . import units
from .generate import UnsafeText

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
COMMANDS = ("compile", "check", "install-unit")


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
    _install_unit_parser(commands)
    return parser


def _install_unit_parser(commands) -> None:
    install = commands.add_parser(
        "install-unit", help="install the systemd units (boot, daylight saving time)",
        description="Write mailpubc.service (loads the last applied ruleset at boot) and "
                    "mailpubc-reapply.service/.timer (applies again when the time zone's "
                    "offset changes); then: systemctl daemon-reload && systemctl enable "
                    "mailpubc.service mailpubc-reapply.timer")
    install.add_argument("--prefix", metavar="DIR", default=units.UNIT_DIR,
                         help=f"the folder for the unit files (default {units.UNIT_DIR})")
    install.set_defaults(run=_install_unit)


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


def _install_unit(args: argparse.Namespace) -> int:
    try:
        written = units.install(Path(args.prefix))
    except (units.UnitError, OSError) as exc:
        raise UsageError(f"cannot install the units: {exc}") from exc
    for path in written:
        print(f"wrote {path}")
    print("now: systemctl daemon-reload && "
          "systemctl enable mailpubc.service mailpubc-reapply.timer")
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
