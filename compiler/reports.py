"""The report commands of `mailpubc`: `table`, `graph` and `dns-check`.

    mailpubc table [--format text|markdown|json] POLICY
    mailpubc graph [-o FILE] [--format svg|dot|json] POLICY
    mailpubc dns-check [--nameserver IP[:PORT]] [--timeout SECONDS] [--format text|json] POLICY

`table` and `graph` exit 0, or 1 for an invalid policy. `dns-check` exits 0
when every check holds, 1 when some do not, 2 for an invalid policy or when
the DNS cannot answer.
"""

from __future__ import annotations

import argparse
import json
import sys

from .addresses import parse_address, parse_port

COMMANDS = ("table", "graph", "dns-check")
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def add_commands(commands) -> None:
    """Add the report commands to the `mailpubc` subcommand parsers."""
    from .cli import _seconds   # the command line's one reading of a duration
    table = commands.add_parser("table", help="the published services as a table",
                                description="Print the published services of POLICY: one "
                                            "row per rule, service and port.")
    table.add_argument("policy", metavar="POLICY")
    table.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    table.set_defaults(run=_table)

    graph = commands.add_parser("graph", help="an SVG picture of the policy",
                                description="Draw POLICY as SVG (Graphviz): the firewall, "
                                            "what it publishes and what may go out.")
    graph.add_argument("policy", metavar="POLICY")
    graph.add_argument("-o", "--output", metavar="FILE",
                       help="write the SVG to FILE (atomically) instead of stdout")
    graph.add_argument("--format", choices=("svg", "dot", "json"), default="svg",
                       help="SVG (default), the DOT source, or Graphviz's JSON")
    graph.set_defaults(run=_graph)

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
    check.add_argument("--timeout", metavar="SECONDS", type=_seconds, default=5.0,
                       help="give up on a query after this long (default 5)")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(run=_dns_check)


def _nameserver(text: str) -> tuple[str, int]:
    """IP, IP:PORT or [IPv6]:PORT as (address, port)."""
    address, port = text, "53"
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if rest or not bracket else "53")
    elif text.count(":") == 1:
        address, port = text.split(":")
    number = parse_port(port)
    if parse_address(address) is None or number is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP, IP:PORT or [IPv6]:PORT")
    return address, number


def _compiled(path: str) -> api.Result:
    from . import api    # late: building the parser must not load the compiler
    result = api.compile_path(path)
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)
    return result


def _table(args: argparse.Namespace) -> int:
    from . import table
    result = _compiled(args.policy)
    if not result.ok:
        return EXIT_INVALID
    sys.stdout.write(table.render(result.policy, args.format))
    return EXIT_OK


# graphviz and dnspython are imported by the commands that use them, so that
# compiling does not load them; cli imports this module, hence its late import.
def _graph(args: argparse.Namespace) -> int:
    import graphviz
    from . import graph
    from .cli import UsageError, _write_atomically
    result = _compiled(args.policy)
    if not result.ok:
        return EXIT_INVALID
    try:
        svg = graph.render(result.policy, args.format)
    except graphviz.ExecutableNotFound as exc:
        raise UsageError("graph needs Graphviz's `dot` (Debian: apt-get install graphviz)") \
            from exc
    if args.output is not None:
        _write_atomically(args.output, svg)
    else:
        sys.stdout.write(svg)
    return EXIT_OK


def _dns_check(args: argparse.Namespace) -> int:
    from . import dnscheck
    result = _compiled(args.policy)
    if not result.ok:
        return EXIT_USAGE
    try:
        checks = dnscheck.run(result.policy, dnscheck.resolver(args.nameserver, args.timeout))
    except dnscheck.Unreachable as exc:
        print(f"mailpubc: DNS unreachable: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps({"ok": all(c.ok for c in checks),
                          "checks": [c.as_json() for c in checks]}, indent=2))
    elif not checks:
        print("no publication has a hostname: nothing to check")
    else:
        print("\n".join(str(c) for c in checks))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_INVALID
