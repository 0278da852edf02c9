"""The `mailpubc` command: a thin layer over `mailpubc.api` and `mailpubc.nft`.

    mailpubc [compile] [-o FILE] [--format nft|json] [--no-nft-check] POLICY
    mailpubc check [--strict] [--no-nft-check] [--live [--netns NS]] POLICY...
    mailpubc apply [--netns NS] [--confirm SECONDS [--no-wait]] [--force] POLICY
    mailpubc confirm [--netns NS]
    mailpubc diff [--netns NS] [--format text|json] POLICY
    mailpubc reapply [--netns NS]
    mailpubc explain [--format text|json] [--at "YYYY-MM-DD HH:MM"] POLICY --from ADDR --to ADDR:PORT[/PROTO]
    mailpubc stats [--netns NS] [--format text|json] POLICY
    mailpubc install-unit [--prefix DIR]
    mailpubc boot-load

POLICY `-` is standard input. Exit status: 0 done; 1 the policy is invalid
(each problem on stderr as FILE:LINE:COL: error: MESSAGE, nothing on stdout),
or has warnings under `check --strict`; 2 wrong usage; 3 an internal error,
such as nft rejecting what the compiler wrote (a bug). apply, confirm, diff
and reapply have their own codes (mailpubc.deploy, docs/policy-language.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys

from . import reports
from .diagnostics import UsageError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
COMMANDS = ("compile", "check", "explain", "apply", "confirm", "diff", "reapply",
            "rollback-watch", "install-unit", "boot-load", "stats")
COMMANDS += reports.COMMANDS


class InternalError(Exception):
    """The compiler wrote something it should not have: a bug, not bad input."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpubc",
        description="Compile a mail-publishing policy into an nftables ruleset. "
                    "`mailpubc POLICY` is `mailpubc compile POLICY`.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
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
    check.add_argument("--live", action="store_true",
                       help="also warn about other tables whose base chains drop what "
                            "the policy accepts (reads the live ruleset)")
    check.add_argument("--netns", metavar="NS", type=_netns_name,
                       help="with --live: the network namespace to read")
    check.set_defaults(run=_check)
    _add_explain(commands)
    _add_stats(commands)
    _deploy_commands(commands)
    reports.add_commands(commands)
    _boot_commands(commands)
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


def _add_stats(commands) -> None:
    stats = commands.add_parser(
        "stats", help="live packet and byte counts per policy rule",
        description="Read the counters of POLICY's live table: packets and bytes accepted "
                    "by each policy rule. Exit 2 if the table is not loaded.")
    stats.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    stats.add_argument("--netns", metavar="NS", type=_netns_name,
                       help="read the table in this network namespace")
    stats.add_argument("--format", choices=("text", "json"), default="text")
    stats.set_defaults(run=_stats)


def _boot_commands(commands) -> None:
    """install-unit, and boot-load: what the boot unit runs."""
    from . import units
    install = commands.add_parser(
        "install-unit", help="install the systemd units (boot, daylight saving time)",
        description="Write mailpubc.service (loads the last applied ruleset at boot, or "
                    "its fallback; apply must have made one final first) and "
                    "mailpubc-reapply.service/.timer (applies again when the time zone's "
                    "offset changes); then: systemctl daemon-reload && systemctl enable "
                    "mailpubc.service mailpubc-reapply.timer")
    install.add_argument("--prefix", metavar="DIR", default=units.UNIT_DIR,
                         help=f"the folder for the unit files (default {units.UNIT_DIR})")
    install.set_defaults(run=_install_unit)
    boot_load = commands.add_parser(
        "boot-load", help="load the saved ruleset, or its fallback (mailpubc.service runs it)",
        description="Load the ruleset apply saved if it matches its digest; else the "
                    "fallback apply saved with it (management SSH only), else a lockdown. "
                    "Exit 0 the saved ruleset, 1 the fallback or the lockdown, 3 nothing.")
    boot_load.set_defaults(run=_boot_load)


def _deploy_commands(commands) -> None:
    """apply, confirm, diff, reapply (mailpubc.deploy) and the rollback watcher."""
    def netns(sub) -> None:
        sub.add_argument("--netns", metavar="NS", type=_netns_name,
                         help="work in network namespace NS (ip netns), with its own state")

    apply = commands.add_parser(
        "apply", help="compile and load POLICY in one transaction",
        description="Compile POLICY, dry-run it and load it in one transaction. Exit 0 "
                    "applied, 1 invalid policy, 2 refused (lock held, a confirmation "
                    "pending, lockout guard), 3 nft refused (nothing changed), 4 not "
                    "confirmed and rolled back.")
    apply.add_argument("policy", metavar="POLICY")
    netns(apply)
    apply.add_argument("--confirm", type=_seconds, metavar="SECONDS",
                       help="restore the previous state after SECONDS unless confirmed "
                            "(answer y on the terminal, or run `mailpubc confirm`)")
    apply.add_argument("--no-wait", action="store_true",
                       help="with --confirm: return once loaded; confirm later")
    apply.add_argument("--force", action="store_true",
                       help="apply even if the policy would lock out this SSH session")
    apply.add_argument("--record-as", metavar="PATH",
                       help="record PATH, not POLICY, as the policy reapply compiles; PATH "
                            "must hold POLICY's very text by then (reapply refuses another), "
                            "e.g. when POLICY is a candidate moved to PATH once final")
    apply.set_defaults(run=_apply)

    confirm = commands.add_parser("confirm", help="confirm a pending apply --confirm",
                                  description="Confirm a pending apply; exit 1 if none is.")
    netns(confirm)
    confirm.set_defaults(run=_confirm)

    diff = commands.add_parser(
        "diff", help="what apply would change in the live table",
        description="Compare the live table with POLICY's (handles, counters and "
                    "run-time set elements ignored). Exit 0 same, 1 differs, 2 error.")
    diff.add_argument("policy", metavar="POLICY")
    netns(diff)
    diff.add_argument("--format", choices=("text", "json"), default="text",
                      help="a unified diff (default), or JSON with before and after")
    diff.set_defaults(run=_diff)

    reapply = commands.add_parser(
        "reapply", help="recompile the policy last made final; apply it if its ruleset changed",
        description="For the daylight saving timer (schedules bake in the UTC offset) and "
                    "refreshed list files. Only the policy text last made final: an edited "
                    "or rolled-back policy file is refused (exit 2), nothing loaded.")
    netns(reapply)
    reapply.set_defaults(run=_reapply)

    # internal: started by apply --confirm, the pending record on its stdin
    watcher = commands.add_parser("rollback-watch")
    netns(watcher)
    watcher.add_argument("token")
    watcher.set_defaults(run=_watch)


def _netns_name(text: str) -> str:
    """A name `ip netns` made (/run/netns/NAME), also a folder name in the state."""
    if text in (".", "..") or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"not a network namespace name: {text!r}")
    return text


def _seconds(text: str) -> float:
    """Decimal seconds in ASCII digits: `float` also takes `1_0`, other
    scripts' digits, nan and inf."""
    value = float(text) if re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text) else 0
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"not a number of seconds (0 to 86400): {text!r}")
    return value


class _Version(argparse.Action):
    """--version, looked up only when asked: importlib.metadata costs more
    than the rest of a `mailpubc check` start."""

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import metadata
        try:
            version = metadata.version("mailpubc")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        print(f"mailpubc {version}")
        parser.exit()


def _report(result: api.Result) -> None:
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)


def _output(result: api.Result, output_format: str, nft_check: bool) -> tuple[str, object]:
    """The ruleset in `output_format` and, if asked, its dry run; raise on failure."""
    from . import nft
    from .generate import UnsafeText
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
    import tempfile     # late, as most imports here: `check` writes no file (issue #12)
    if os.path.lexists(path) and not os.path.isfile(path):    # a device, /dev/stdout, a folder
        raise UsageError(f"cannot write {path}: not a regular file (it would be replaced)")
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
    from . import api
    result = api.compile_path(args.policy)
    _report(result)
    if not result.ok:
        return EXIT_INVALID
    text, checked = _output(result, args.format, not args.no_nft_check)
    _note_unchecked(checked)
    if args.output is not None:
        _write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from . import api
    status = EXIT_OK
    for path in args.policies:
        result = api.compile_path(path)
        _report(result)
        if not result.ok or (args.strict and result.warnings):
            status = EXIT_INVALID
            continue
        # The JSON form needs no jinja2, so `check` starts fast; the text form
        # is dry-run by `compile`, and tests/test_generators.py holds both to
        # the same kernel listing.
        _, checked = _output(result, "json", not args.no_nft_check)
        found = _live_warnings(result, args.netns) if args.live else []
        if checked is None:
            print(f"{path}: ok (nft dry run skipped)")
        elif checked.ran:
            print(f"{path}: ok (nft dry run passed: {checked.method})")
        else:
            print(f"{path}: ok, but the nft dry run could not run: {checked.message}")
        _warn(found)
        if args.strict and found:
            status = EXIT_INVALID
    return status


def _live_warnings(result: api.Result, netns: str | None) -> list[str]:
    """check --live's warnings, read before `check` prints its "ok": a live
    ruleset it cannot read (no such namespace) is a usage error, no output."""
    from . import bridges, deploy, nft
    try:
        return (deploy.live_warnings(result.ruleset.table, netns)
                + bridges.warnings(result.policy.firewall, netns))
    except nft.NftError as exc:
        raise UsageError(f"cannot read the live ruleset: {exc}") from exc


def _explain(args: argparse.Namespace) -> int:
    from datetime import datetime

    from . import api, explain
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


def _stats(args: argparse.Namespace) -> int:
    from . import api, deploy, nft, stats
    result = api.compile_path(args.policy)
    _report(result)
    if not result.ok:
        return EXIT_INVALID
    table = result.ruleset.table
    try:
        found = stats.counts(result.ruleset, args.netns)
        matches = deploy.live_matches(result, args.netns)
    except (stats.TableMissing, nft.NftError) as exc:
        print(f"mailpubc: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not matches:
        print(f"mailpubc: note: {stats.mismatch(table, result.source)}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(stats.to_json(table, found, matches), indent=1))
    else:
        sys.stdout.write(stats.text(table, found))
    return EXIT_OK


def _install_unit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import units
    try:
        written = units.install(Path(args.prefix))
    except (units.UnitError, OSError) as exc:
        raise UsageError(f"cannot install the units: {exc}") from exc
    for path in written:
        print(f"wrote {path}")
    print("now: systemctl daemon-reload && "
          "systemctl enable mailpubc.service mailpubc-reapply.timer")
    return EXIT_OK


def _boot_load(args: argparse.Namespace) -> int:
    from . import boot
    from .state import State
    loaded = boot.load(State.of(None))
    print(f"mailpubc: {loaded.message}", file=sys.stderr)
    return loaded.status


def _warn(warnings) -> None:
    for warning in warnings:
        print(f"mailpubc: warning: {warning}", file=sys.stderr)


def _deploying(command):
    """A deploy command with its errors told apart in one place: a --netns
    naming no namespace is wrong usage (exit 2, nothing written; so is a
    state folder that cannot be used, a StateError), a refusal exits 2, nft
    refusing the ruleset 3."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from . import deploy, nft
        try:
            return command(args)
        except nft.NoNamespace as exc:
            raise UsageError(str(exc)) from exc
        except deploy.Refused as exc:
            print(f"mailpubc: {exc}", file=sys.stderr)
            return deploy.EXIT_REFUSED
        except nft.NftError as exc:
            print(f"mailpubc: nft refused the ruleset; nothing changed:\n{exc}",
                  file=sys.stderr)
            return deploy.EXIT_NFT
    return run


@_deploying
def _apply(args: argparse.Namespace) -> int:
    from . import api, deploy
    if args.no_wait and args.confirm is None:
        raise UsageError("--no-wait goes with --confirm SECONDS")
    result = api.compile_path(args.policy)
    _report(result)
    if not result.ok:
        return EXIT_INVALID
    path = args.record_as or (None if args.policy == "-" else args.policy)
    outcome = deploy.apply(result, netns=args.netns, confirm=args.confirm,
                           force=args.force, policy_path=path and os.path.abspath(path))
    _warn(outcome.warnings)
    print(f"mailpubc: {outcome.message}", file=sys.stderr)
    if outcome.token is None or args.no_wait:
        return outcome.status
    if sys.stdin.isatty():
        print("mailpubc: confirm? [y/N] ", end="", file=sys.stderr, flush=True)
    else:
        print("mailpubc: standard input is not a terminal: a line y on it confirms too",
              file=sys.stderr)
    final = deploy.await_confirmation(outcome.token, args.netns, sys.stdin)
    print(f"mailpubc: {final.message}", file=sys.stderr)
    return final.status


def _watch(args: argparse.Namespace) -> int:
    from . import deploy
    deploy.watch(args.netns, args.token, json.load(sys.stdin))
    return EXIT_OK


@_deploying
def _confirm(args: argparse.Namespace) -> int:
    from . import deploy
    if deploy.confirm(args.netns):
        print("mailpubc: confirmed", file=sys.stderr)
        return EXIT_OK
    print("mailpubc: nothing to confirm", file=sys.stderr)
    return EXIT_INVALID


@_deploying
def _diff(args: argparse.Namespace) -> int:
    from . import api, deploy, nft
    result = api.compile_path(args.policy)
    _report(result)
    if not result.ok:
        return EXIT_USAGE
    try:
        _warn(deploy.live_warnings(result.ruleset.table, args.netns))
        difference = deploy.diff(result, args.netns)
    except nft.NftError as exc:
        print(f"mailpubc: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps({"changed": not difference.same, "diff": difference.text,
                          "before": difference.before, "after": difference.after}, indent=1))
    else:
        sys.stdout.write(difference.text)
    return EXIT_OK if difference.same else 1


@_deploying
def _reapply(args: argparse.Namespace) -> int:
    from . import deploy
    result, outcome = deploy.reapply(args.netns)
    if result is not None:
        _report(result)
    _warn(outcome.warnings)
    print(f"mailpubc: {outcome.message}", file=sys.stderr)
    return outcome.status


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
