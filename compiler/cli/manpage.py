"""`mailpubc --man`: the manual page mailpubc(1), written in roff from the
command line's own definitions (each command's usage, description and
options), so that it cannot drift from what the parser accepts. The same
text is installed as share/man/man1/mailpubc.1 (man/mailpubc.1, which
tests/test_manpage.py holds equal to this output)."""

from __future__ import annotations

import argparse

SUMMARY = "compile a mail-publishing policy into an nftables ruleset"
EXIT_STATUS = (
    "0: done. "
    "1: the policy is invalid (each problem on standard error as FILE:LINE:COL: error: "
    "MESSAGE, nothing on standard output), or has warnings under check --strict. "
    "2: wrong usage. "
    "3: an internal error, such as nft rejecting what the compiler wrote. "
    "apply, confirm, diff, reapply, dns-check and boot-load give some numbers their own "
    "meaning, which each command's description states.")
SEE_ALSO = ".BR nft (8),\n.BR fail2ban-client (1)"


def render(parser: argparse.ArgumentParser) -> str:
    """The whole page; deterministic (no date), so the installed copy can be compared."""
    lines = ['.TH MAILPUBC 1 "" "mailpubc" "User Commands"', ".SH NAME",
             f"mailpubc \\- {SUMMARY}", ".SH SYNOPSIS"]
    listed = commands(parser)
    for name, command in listed:
        lines += [".nf", _text(_usage(command)), ".fi"]
    lines += [".SH DESCRIPTION", _text(parser.description or ""), ".SH COMMANDS"]
    for name, command in listed:
        lines += [f".SS {_text(name)}", _text(command.description or "")]
        lines += _options(command)
    lines += [".SH EXIT STATUS", _text(EXIT_STATUS), ".SH SEE ALSO", SEE_ALSO]
    return "\n".join(line for line in lines if line) + "\n"


def commands(parser: argparse.ArgumentParser,
             prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """The documented subcommands, in the parser's order (internal ones have no
    help), each followed by its own (`integration fail2ban`)."""
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                  None)
    if action is None:
        return []
    documented = {choice.dest for choice in action._choices_actions}
    return [found for name, sub in action.choices.items() if name in documented
            for found in [(prefix + name, sub), *commands(sub, f"{prefix}{name} ")]]


def _usage(command: argparse.ArgumentParser) -> str:
    return " ".join(command.format_usage().removeprefix("usage: ").split())


def _options(command: argparse.ArgumentParser) -> list[str]:
    """A tagged paragraph per argument: its forms (and value), its help."""
    lines = []
    for action in command._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        forms = ", ".join(action.option_strings) or (action.metavar or action.dest)
        value = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
        shown = forms if not action.option_strings or action.nargs == 0 else f"{forms} {value}"
        lines += [".TP", f".B {_text(shown)}", _text(action.help or "")]
    return lines


def _text(text: str) -> str:
    """Text roff prints as written: backslashes escaped, hyphens as \\-,
    and a line that would start with . or ' made a plain one."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in escaped.splitlines())
