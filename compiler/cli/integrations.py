"""`mailpubc integration fail2ban`: the configuration of a tool that feeds
the policy's run-time sets (`mailpubc.integration`)."""

from __future__ import annotations

import argparse

from ..diagnostics import ExitCode
from .common import Exit, compiled_or_exit, emit, netns_name, say


def add(commands) -> None:
    integration = commands.add_parser(
        "integration", help="configuration for the tools that ban into dynamic_block",
        description="Print another tool's configuration for the policy's run-time sets "
                    "(firewall.dynamic_block). Exit 0; 1 an invalid policy or one without "
                    "dynamic_block.")
    tools = integration.add_subparsers(dest="tool", metavar="TOOL", required=True)
    fail2ban = tools.add_parser(
        "fail2ban", help="a fail2ban action file banning into the dynamic sets",
        description="A fail2ban action (for action.d/) that bans into NAME_v4 and NAME_v6 "
                    "with the ticket's ban time as the element's timeout, unbans, and never "
                    "creates, flushes or deletes a set.")
    fail2ban.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    fail2ban.add_argument("--netns", metavar="NS", type=netns_name,
                          help="run nft in this network namespace")
    fail2ban.add_argument("-o", "--output", metavar="FILE",
                          help="write the action file to FILE (atomically) instead of stdout")
    fail2ban.set_defaults(run=fail2ban_action)


def fail2ban_action(args: argparse.Namespace) -> int:
    from .. import integration
    result = compiled_or_exit(args.policy)
    try:
        text = integration.fail2ban_action(result.policy, args.netns)
    except integration.NoDynamicSets as exc:
        say(f"error: {exc}")
        raise Exit(ExitCode.INVALID) from exc
    emit(text, args.output)
    return ExitCode.OK
