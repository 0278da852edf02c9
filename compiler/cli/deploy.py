"""`mailpubc apply`, `confirm`, `diff`, `reapply` (mailpubc.deploy) and the
rollback watcher apply --confirm starts."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from ..diagnostics import ExitCode, UsageError
from .common import compiled_or_exit, netns_name, report, say, seconds, warn


def add(commands) -> None:
    apply = commands.add_parser(
        "apply", help="compile and load POLICY in one transaction",
        description="Compile POLICY, dry-run it and load it in one transaction. Exit 0 "
                    "applied, 1 invalid policy, 2 refused (lock held, a confirmation "
                    "pending, lockout guard), 3 nft refused (nothing changed), 4 not "
                    "confirmed and rolled back.")
    apply.add_argument("policy", metavar="POLICY")
    _netns(apply)
    apply.add_argument("--confirm", type=seconds, metavar="SECONDS",
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
    apply.set_defaults(run=apply_policy)
    confirm = commands.add_parser("confirm", help="confirm a pending apply --confirm",
                                  description="Confirm a pending apply; exit 1 if none is.")
    _netns(confirm)
    confirm.set_defaults(run=confirm_apply)
    _add_diff_and_reapply(commands)
    # internal: started by apply --confirm, the pending record on its stdin
    watcher = commands.add_parser("rollback-watch")
    _netns(watcher)
    watcher.add_argument("token")
    watcher.set_defaults(run=watch)


def _add_diff_and_reapply(commands) -> None:
    diff = commands.add_parser(
        "diff", help="what apply would change in the live table",
        description="Compare the live table with POLICY's (handles, counters and "
                    "run-time set elements ignored). Exit 0 same, 1 differs, 2 error.")
    diff.add_argument("policy", metavar="POLICY")
    _netns(diff)
    diff.add_argument("--format", choices=("text", "json"), default="text",
                      help="a unified diff (default), or JSON with before and after")
    diff.set_defaults(run=diff_live)
    reapply = commands.add_parser(
        "reapply", help="recompile the policy last made final; apply it if its ruleset changed",
        description="For the daylight saving timer (schedules bake in the UTC offset) and "
                    "refreshed list files. Only the policy text last made final: an edited "
                    "or rolled-back policy file is refused (exit 2), nothing loaded.")
    _netns(reapply)
    reapply.set_defaults(run=reapply_policy)


def _netns(sub) -> None:
    sub.add_argument("--netns", metavar="NS", type=netns_name,
                     help="work in network namespace NS (ip netns), with its own state")


def _deploying(command):
    """A deploy command with its errors told apart in one place: a --netns
    naming no namespace is wrong usage (exit 2, nothing written; so is a
    state folder that cannot be used, a StateError), a refusal exits 2, nft
    refusing the ruleset 3."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from .. import deploy, nft
        try:
            return command(args)
        except nft.NoNamespace as exc:
            raise UsageError(str(exc)) from exc
        except deploy.Refused as exc:
            say(str(exc))
            return ExitCode.REFUSED
        except nft.NftError as exc:
            say(f"nft refused the ruleset; nothing changed:\n{exc}")
            return ExitCode.NFT
    return run


@_deploying
def apply_policy(args: argparse.Namespace) -> int:
    from .. import deploy
    if args.no_wait and args.confirm is None:
        raise UsageError("--no-wait goes with --confirm SECONDS")
    result = compiled_or_exit(args.policy)
    path = args.record_as or (None if args.policy == "-" else args.policy)
    outcome = deploy.apply(result, netns=args.netns, confirm=args.confirm,
                           force=args.force, policy_path=path and os.path.abspath(path))
    warn(outcome.warnings)
    say(outcome.message)
    if outcome.token is None or args.no_wait:
        return outcome.status
    if sys.stdin.isatty():
        print("mailpubc: confirm? [y/N] ", end="", file=sys.stderr, flush=True)
    else:
        say("standard input is not a terminal: a line y on it confirms too")
    final = deploy.await_confirmation(outcome.token, args.netns, sys.stdin)
    say(final.message)
    return final.status


def watch(args: argparse.Namespace) -> int:
    from .. import deploy
    deploy.watch(args.netns, args.token, json.load(sys.stdin))
    return ExitCode.OK


@_deploying
def confirm_apply(args: argparse.Namespace) -> int:
    from .. import deploy
    if deploy.confirm(args.netns):
        say("confirmed")
        return ExitCode.OK
    say("nothing to confirm")
    return ExitCode.INVALID


@_deploying
def diff_live(args: argparse.Namespace) -> int:
    from .. import deploy, nft
    early = deploy.listed_early(args.netns)     # a block list lists while the policy compiles
    result = compiled_or_exit(args.policy, invalid=ExitCode.USAGE)
    try:
        warn(deploy.live_warnings(result.ruleset.table, args.netns))
        difference = deploy.diff(result, args.netns, early)
    except nft.NftError as exc:
        say(str(exc))
        return ExitCode.USAGE
    if args.format == "json":
        print(json.dumps({"changed": not difference.same, "diff": difference.text,
                          "before": difference.before, "after": difference.after}, indent=1))
    else:
        sys.stdout.write(difference.text)
    return ExitCode.OK if difference.same else ExitCode.DIFFERS


@_deploying
def reapply_policy(args: argparse.Namespace) -> int:
    from .. import deploy
    result, outcome = deploy.reapply(args.netns)
    if result is not None:
        report(result)
    warn(outcome.warnings)
    say(outcome.message)
    return outcome.status
