"""The commands that read a policy, or the live table it made, and print:
`explain`, `stats`, `table`, `graph` and `dns-check`.

`table` and `graph` exit 0, or 1 for an invalid policy. `dns-check` exits 0
when every check holds, 1 when some do not, 2 for an invalid policy or when
the DNS cannot answer. graphviz and dnspython are imported by the commands
that use them, so that compiling does not load them.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..diagnostics import ExitCode, UsageError
from .common import InternalError, compiled_or_exit, emit, netns_name, say, seconds


def add(commands) -> None:
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
    explain.add_argument("--user", metavar="NAME|UID",
                         help="with --from localhost: the local user whose process connects "
                              "(outbound rules with `user`)")
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.set_defaults(run=explain_connection)
    stats = commands.add_parser(
        "stats", help="live packet and byte counts per policy rule",
        description="Read the counters of POLICY's live table: packets and bytes accepted "
                    "by each policy rule, per service and family. Exit 2 if the table is "
                    "not loaded.")
    stats.add_argument("policy", metavar="POLICY", help="the policy file (YAML), - for stdin")
    stats.add_argument("--netns", metavar="NS", type=netns_name,
                       help="read the table in this network namespace")
    stats.add_argument("--format", choices=("text", "json", "prometheus"), default="text",
                       help="prometheus: the text exposition format, for node-exporter's "
                            "textfile collector")
    stats.add_argument("-o", "--output", metavar="FILE",
                       help="write to FILE (atomically, mode 0644) instead of stdout")
    stats.set_defaults(run=live_counts)
    _add_reports(commands)


def _add_reports(commands) -> None:
    table = commands.add_parser("table", help="the published services as a table",
                                description="Print the published services of POLICY: one "
                                            "row per rule, service and port.")
    table.add_argument("policy", metavar="POLICY")
    table.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    table.set_defaults(run=publication_table)
    graph = commands.add_parser("graph", help="an SVG picture of the policy",
                                description="Draw POLICY as SVG (Graphviz): the firewall, "
                                            "what it publishes and what may go out.")
    graph.add_argument("policy", metavar="POLICY")
    graph.add_argument("-o", "--output", metavar="FILE",
                       help="write the SVG to FILE (atomically) instead of stdout")
    graph.add_argument("--format", choices=("svg", "dot", "json"), default="svg",
                       help="SVG (default), the DOT source, or Graphviz's JSON")
    graph.set_defaults(run=draw)
    check = commands.add_parser("dns-check", help="check A/AAAA, PTR and MX against POLICY",
                                description="For each publication with a hostname: its "
                                            "A/AAAA records are the external address, the "
                                            "address's PTR names it, each mail domain's MX "
                                            "names it. Exit 0 all hold, 1 some do not, 2 "
                                            "invalid policy or DNS unreachable.")
    check.add_argument("policy", metavar="POLICY")
    check.add_argument("--nameserver", metavar="IP[:PORT]", type=_nameserver,
                       help="ask only this server (IPv6 with a port: [ADDR]:PORT); "
                            "default: the system's resolvers")
    check.add_argument("--timeout", metavar="SECONDS", type=seconds, default=5.0,
                       help="give up on a query after this long (default 5)")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(run=dns_check)


def _nameserver(text: str) -> tuple[str, int]:
    """IP, IP:PORT or [IPv6]:PORT as (address, port)."""
    from ..addresses import parse_address, parse_port, split_endpoint
    try:
        address, port = split_endpoint(text)
    except ValueError:
        address, port = text, ""
    number = parse_port("53" if port is None else port)
    if parse_address(address) is None or number is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP, IP:PORT or [IPv6]:PORT")
    return address, number


def explain_connection(args: argparse.Namespace) -> int:
    from datetime import datetime

    from .. import explain
    from ..evaluate import UnjudgedKind
    at = None
    if args.at is not None:
        try:
            at = datetime.strptime(args.at, "%Y-%m-%d %H:%M")
        except ValueError as exc:
            raise UsageError(f"--at {args.at!r}: expected YYYY-MM-DD HH:MM") from exc
    result = compiled_or_exit(args.policy)
    try:
        destination, protocol = explain.parse_target(args.target)
        answer = explain.explain(result, args.source, destination, protocol, at, args.user)
    except explain.QueryError as exc:
        raise UsageError(str(exc)) from exc
    except UnjudgedKind as exc:
        raise InternalError(str(exc)) from exc
    if args.format == "json":
        sys.stdout.write(json.dumps(answer.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(answer.text())
    return ExitCode.OK


def live_counts(args: argparse.Namespace) -> int:
    from .. import deploy, nft, stats
    result = compiled_or_exit(args.policy)
    table = result.ruleset.table
    try:
        found = stats.counts(result.ruleset, args.netns)
        matches = deploy.rules_match(result, args.netns)
    except (stats.TableMissing, nft.NftError) as exc:
        say(str(exc))
        return ExitCode.USAGE
    if not matches:
        say(f"note: {stats.mismatch(table, result.source)}")
    if args.format == "json":
        text = json.dumps(stats.to_json(table, found, matches), indent=1) + "\n"
    elif args.format == "prometheus":
        text = stats.prometheus(table, found)
    else:
        text = stats.text(table, found)
    emit(text, args.output)
    return ExitCode.OK


def publication_table(args: argparse.Namespace) -> int:
    from .. import table
    result = compiled_or_exit(args.policy)
    sys.stdout.write(table.render(result.policy, args.format))
    return ExitCode.OK


def draw(args: argparse.Namespace) -> int:
    import graphviz

    from .. import graph
    result = compiled_or_exit(args.policy)
    try:
        svg = graph.render(result.policy, args.format)
    except graphviz.ExecutableNotFound as exc:
        raise UsageError("graph needs Graphviz's `dot` (Debian: apt-get install graphviz)") \
            from exc
    emit(svg, args.output)
    return ExitCode.OK


def dns_check(args: argparse.Namespace) -> int:
    from .. import dnscheck
    result = compiled_or_exit(args.policy, invalid=ExitCode.USAGE)
    try:
        checks = dnscheck.run(result.policy, dnscheck.resolver(args.nameserver, args.timeout))
    except dnscheck.Unreachable as exc:
        say(f"DNS unreachable: {exc}")
        return ExitCode.USAGE
    if args.format == "json":
        print(json.dumps({"ok": all(c.ok for c in checks),
                          "checks": [c.as_json() for c in checks]}, indent=2))
    elif not checks:
        print("no publication has a hostname: nothing to check")
    else:
        print("\n".join(str(c) for c in checks))
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.INVALID
