"""`mailpubc --bash-completion`: bash completion written from the command
line's own definitions (each command's subcommands, options and their
choices), like the man page (`manpage`), so neither can drift from the
parser. Installed as share/bash-completion/completions/mailpubc
(completions/mailpubc, which tests/test_manpage.py holds equal)."""

from __future__ import annotations

import argparse
import shlex

from .manpage import commands

HEADER = """\
# bash completion for mailpubc, written by `mailpubc --bash-completion`
# from the command line's own definitions; do not edit.
"""
# the completion function: the command path is the words that name a
# subcommand of the path so far; then the value an option takes (its
# choices, a namespace's name, or a file), an option, a subcommand, or a file
FUNCTION = """\
_mailpubc() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path=mailpubc word i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ " ${_mailpubc_commands[$path]-} " == *" $word "* ]]; then
            path="$path $word"
        fi
    done
    local key="$path $prev"
    if [[ -n ${_mailpubc_choices[$key]+set} ]]; then
        COMPREPLY=($(compgen -W "${_mailpubc_choices[$key]}" -- "$cur"))
    elif [[ -n ${_mailpubc_netns[$key]+set} ]]; then
        COMPREPLY=($(compgen -W "$(ip netns list 2>/dev/null | cut -d' ' -f1)" -- "$cur"))
    elif [[ -n ${_mailpubc_valued[$key]+set} ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${_mailpubc_options[$path]-}" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "${_mailpubc_commands[$path]-}" -- "$cur"))
        if [[ $path == mailpubc || -z ${_mailpubc_commands[$path]+set} ]]; then
            COMPREPLY+=($(compgen -f -- "$cur"))
        fi
    fi
}
complete -o filenames -F _mailpubc mailpubc
"""
DEFAULT_COMMAND = "compile"     # `mailpubc POLICY`: its options are the top level's too


def render(parser: argparse.ArgumentParser) -> str:
    """The script: the parser as bash associative arrays keyed by command
    path (`mailpubc integration crowdsec`), then the function."""
    tables: dict[str, dict[str, str]] = {"commands": {}, "options": {}, "choices": {},
                                         "netns": {}, "valued": {}}
    listed = dict(commands(parser))
    for name, command in [("", parser), *listed.items()]:
        path = f"mailpubc {name}".strip()
        subcommands = [sub for sub in dict(commands(command)) if " " not in sub]
        if subcommands:
            tables["commands"][path] = " ".join(subcommands)
        actions = _documented(command) + (_documented(listed[DEFAULT_COMMAND]) if not name else [])
        tables["options"][path] = " ".join(dict.fromkeys(form for action in actions
                                                         for form in action.option_strings))
        for action in actions:
            for form in action.option_strings if action.nargs != 0 else ():
                table = ("choices" if action.choices else
                         "netns" if action.metavar == "NS" else "valued")
                tables[table][f"{path} {form}"] = (" ".join(map(str, action.choices))
                                                   if action.choices else "1")
    lines = [HEADER]
    for table, entries in tables.items():
        pairs = " ".join(f"[{shlex.quote(k)}]={shlex.quote(v)}" for k, v in entries.items())
        lines.append(f"declare -gA _mailpubc_{table}=({pairs})")
    return "\n".join(lines) + "\n\n" + FUNCTION


def _documented(command: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options a user may type (internal ones have no help)."""
    return [action for action in command._actions
            if action.option_strings and action.help != argparse.SUPPRESS]
