"""The `mailpubc` command.

    mailpubc [-o FILE] [--no-nft-check] POLICY      compile; ruleset on stdout or in FILE
    mailpubc check [--no-nft-check] POLICY...       validate (pre-commit passes many)

Exit status: 0 done; 1 the policy is invalid (each problem on stderr as
FILE:LINE:COL: error: MESSAGE, nothing on stdout); 2 wrong usage; 3 an
internal error, such as nft rejecting what the compiler wrote (a bug).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from . import nft
from .diagnostics import PolicyError
from .pipeline import compile_file
from .render import UnsafeText

EXIT_OK, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 3   # 2, wrong usage, is argparse's


class InternalError(Exception):
    """The compiler wrote something it should not have: a bug, not bad input."""


def _compile_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpubc",
        description="Compile a mail-publishing policy into an nftables ruleset. "
                    "`mailpubc check POLICY...` only validates.")
    parser.add_argument("policy", help="the policy file (YAML)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the ruleset to FILE (atomically) instead of stdout")
    parser.add_argument("--no-nft-check", action="store_true",
                        help="skip the nft dry run of the generated ruleset")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailpubc check",
                                     description="Validate policy files; exit 1 if any is invalid.")
    parser.add_argument("policies", nargs="+", metavar="POLICY")
    parser.add_argument("--no-nft-check", action="store_true",
                        help="skip the nft dry run of the generated rulesets")
    return parser


def _build(path: str, nft_check: bool) -> tuple[str, nft.CheckResult | None]:
    """Compile `path` and, if asked, dry-run the result; raise on any failure."""
    try:
        text = compile_file(path).text
    except UnsafeText as exc:
        raise InternalError(f"refused to print unsafe text: {exc}") from exc
    if not nft_check:
        return text, None
    result = nft.dry_run(text)
    if result.ran and not result.ok:
        raise InternalError("nft rejected the generated ruleset "
                            f"({result.method}); please report this:\n{result.message}")
    return text, result


def _write_atomically(path: str, text: str) -> None:
    """Temporary file in the same folder, then rename: never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".mailpubc-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _note_unchecked(result: nft.CheckResult | None) -> None:
    if result is not None and not result.ran:
        print(f"mailpubc: note: nft dry run not run: {result.message}", file=sys.stderr)


def _compile(args: argparse.Namespace) -> int:
    text, result = _build(args.policy, not args.no_nft_check)
    _note_unchecked(result)
    if args.output:
        _write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.policies:
        try:
            _, result = _build(path, not args.no_nft_check)
        except PolicyError as exc:
            for diagnostic in exc.diagnostics:
                print(diagnostic, file=sys.stderr)
            status = EXIT_INVALID
            continue
        if result is None:
            print(f"{path}: ok (nft dry run skipped)")
        elif result.ran:
            print(f"{path}: ok (nft dry run passed: {result.method})")
        else:
            print(f"{path}: ok, but the nft dry run could not run: {result.message}")
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        args, command = _check_parser().parse_args(argv[1:]), _check
    else:
        args, command = _compile_parser().parse_args(argv), _compile
    try:
        return command(args)
    except PolicyError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return EXIT_INVALID
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
