"""The `mailpubc` command: a thin layer over `mailpubc.api`, one module a
group of commands (compile, deploy, inspect, units), each importing the
compiler only when its command runs.

    mailpubc [compile] [-o FILE] [--format nft|json] [--no-nft-check] POLICY
    mailpubc check [--strict] [--no-nft-check] [--live [--netns NS]] POLICY...
    mailpubc apply [--netns NS] [--confirm SECONDS [--no-wait]] [--force] POLICY
    mailpubc confirm [--netns NS]
    mailpubc diff [--netns NS] [--format text|json] POLICY
    mailpubc reapply [--netns NS]
    mailpubc explain [--format text|json] [--at "YYYY-MM-DD HH:MM"] [--user NAME|UID]
                     POLICY --from ADDR --to ADDR:PORT[/PROTO]
    mailpubc stats [--netns NS] [--format text|json|prometheus] [-o FILE] POLICY
    mailpubc table [--format text|markdown|json] POLICY
    mailpubc graph [-o FILE] [--format svg|dot|json] POLICY
    mailpubc dns-check [--nameserver IP[:PORT]] [--timeout SECONDS] [--format text|json] POLICY
    mailpubc install-unit [--prefix DIR]
    mailpubc boot-load
    mailpubc integration fail2ban [--netns NS] [--set NAME] [-o FILE] POLICY
    mailpubc integration crowdsec [--set NAME] [--api-url URL] [-o FILE] POLICY
    mailpubc audit [--postfix DIR] [--dovecot FILE] [--netns NS] [--format text|json] POLICY
    mailpubc --man
    mailpubc --bash-completion

POLICY `-` is standard input. Exit status (`diagnostics.ExitCode`): 0 done;
1 the policy is invalid (each problem on stderr as FILE:LINE:COL: error:
MESSAGE, nothing on stdout), or has warnings under `check --strict`; 2 wrong
usage; 3 an internal error, such as nft rejecting what the compiler wrote (a
bug). apply, confirm, diff, reapply, dns-check and boot-load give some
numbers their own meaning (docs/policy-language.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import collector
from ..diagnostics import ExitCode, UsageError
from . import compile, deploy, inspect, integrations, units
from .common import Exit, InternalError

COMMANDS = ("compile", "check", "explain", "apply", "confirm", "diff", "reapply",
            "rollback-watch", "install-unit", "boot-load", "stats", "table", "graph",
            "dns-check", "integration", "audit")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailpubc",
        description="Compile a mail-publishing policy into an nftables ruleset. "
                    "`mailpubc POLICY` is `mailpubc compile POLICY`.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    parser.add_argument("--man", action=_Written, nargs=0, const="manpage",
                        help="print the manual page mailpubc(1) and exit")
    parser.add_argument("--bash-completion", action=_Written, nargs=0, const="completion",
                        help="print the bash completion script and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (compile, inspect, deploy, units, integrations):
        group.add(commands)
    return parser


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


class _Written(argparse.Action):
    """--man and --bash-completion: written from this very parser by the
    module named in `const` (`manpage`, `completion`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import import_module
        sys.stdout.write(import_module(f".{self.const}", __package__).render(parser))
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version", "--man",
                                                           "--bash-completion"):
        argv.insert(0, "compile")    # `mailpubc POLICY` compiles
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        return ExitCode.USAGE
    try:
        with collector.paused():
            return int(args.run(args))
    except Exit as exc:
        return exc.status
    except UsageError as exc:
        print(f"mailpubc: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except InternalError as exc:
        print(f"mailpubc: internal error: {exc}", file=sys.stderr)
        return ExitCode.INTERNAL
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # no traceback for users; MAILPUBC_DEBUG=1 shows it
        if os.environ.get("MAILPUBC_DEBUG"):
            raise
        print(f"mailpubc: internal error: {type(exc).__name__}: {exc} "
              "(run with MAILPUBC_DEBUG=1 for details, and please report it)", file=sys.stderr)
        return ExitCode.INTERNAL
