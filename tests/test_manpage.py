"""`mailpubc --man` and `mailpubc --bash-completion`: mailpubc(1) and the
bash completion from the command line's own definitions, the same texts as
the installed man/mailpubc.1 and completions/mailpubc, every command and
option in both; a page groff reads without a warning, and a script bash
completes with."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cli import run_mailpubc
from mailpubc.cli import _parser
from mailpubc.cli.manpage import commands, render

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "man" / "mailpubc.1"
COMPLETION = ROOT / "completions" / "mailpubc"


def test_man_prints_the_installed_page():
    run = run_mailpubc("--man")
    assert run.returncode == 0 and run.stderr == ""
    assert run.stdout == PAGE.read_text(), \
        "man/mailpubc.1 is stale: python -m mailpubc --man > man/mailpubc.1"


def test_every_command_and_option_is_on_the_page():
    page = render(_parser())
    documented = re.findall(r"^\.SS (.+)$", page, re.M)
    assert documented == ["compile", "check", "explain", "stats", "table", "graph", "dns\\-check",
                          "apply", "confirm", "diff", "reapply", "install\\-unit", "boot\\-load",
                          "integration", "integration fail2ban", "integration crowdsec", "audit"]
    for option in ("\\-\\-confirm SECONDS", "\\-\\-user NAME|UID", "\\-\\-no\\-nft\\-check",
                   "\\-\\-nameserver IP[:PORT]"):
        assert f".B {option}" in page


def test_bash_completion_prints_the_installed_script():
    run = run_mailpubc("--bash-completion")
    assert run.returncode == 0 and run.stderr == ""
    assert run.stdout == COMPLETION.read_text(), \
        "completions/mailpubc is stale: python -m mailpubc --bash-completion > completions/mailpubc"


def test_every_command_and_option_is_on_the_page_and_in_the_completion():
    """Each documented command a section of the page with each of its options,
    and, asked by bash, completed with its subcommands and all its options."""
    parser = _parser()
    page = render(parser)
    listed = [("", parser)] + commands(parser)
    assert "integration crowdsec" in dict(listed)
    asked = [["mailpubc", *name.split(), cur] for name, _ in listed for cur in ("-", "")]
    answers = iter(_complete(asked))
    for name, command in listed:
        options, words = next(answers).split(), next(answers).split()
        wanted = [form for action in command._actions for form in action.option_strings]
        if not name:        # `mailpubc POLICY` is compile: its options are offered too
            wanted += [form for action in dict(listed)["compile"]._actions
                       for form in action.option_strings]
        assert sorted(set(options)) == sorted(set(wanted)), name
        assert set(dict(commands(command))) - {n for n in dict(commands(command)) if " " in n} \
            <= set(words), name
        if name:
            assert f"\n.SS {name.replace('-', chr(92) + '-')}\n" in page, name
            section = page.split(f".SS {name.replace('-', chr(92) + '-')}\n", 1)[1].split(".SS")[0]
            tagged = [line[3:].replace("\\-", "-") for line in section.splitlines()
                      if line.startswith(".B ")]
            for form in set(wanted) - {"-h", "--help"}:
                assert any(re.search(rf"(^|, ){re.escape(form)}( |,|$)", tag) for tag in tagged), \
                    (name, form)


def _complete(asked: list[list[str]]) -> list[str]:
    """What bash's completion offers for each list of words (the last one
    being completed), a line each, from completions/mailpubc in one bash."""
    script = [f"source {shlex.quote(str(COMPLETION))}"]
    for words in asked:
        script += [f"COMP_WORDS=({' '.join(map(shlex.quote, words))})",
                   "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _mailpubc",
                   'echo "${COMPREPLY[*]}"']
    run = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                         timeout=30, cwd=ROOT)
    assert (run.returncode, run.stderr) == (0, "")
    return run.stdout.split("\n")[:-1]


@pytest.mark.parametrize("words, offered", [
    (["mailpubc", "st"], ["stats"]),
    (["mailpubc", "integration", ""], ["fail2ban", "crowdsec"]),
    (["mailpubc", "integration", "crowdsec", "--"], ["--help", "--set", "--api-url", "--output"]),
    (["mailpubc", "stats", "--format", ""], ["text", "json", "prometheus"]),
    (["mailpubc", "--format", "j"], ["json"]),          # `mailpubc POLICY` is compile
    (["mailpubc", "apply", "--netns", "NS"], ["NS"]),   # the namespaces there are
    (["mailpubc", "check", "golden/scenario2/pol"], ["golden/scenario2/policy.yaml"]),
])
def test_bash_completes_commands_options_and_values(words, offered, namespaces):
    if "NS" in words:
        name = namespaces("complete").name
        words, offered = [name[:-3] if w == "NS" else w for w in words], [name]
    assert _complete([words])[0].split() == offered


def test_user_text_cannot_become_a_roff_request():
    parser = _parser()
    parser.description = ".so /etc/passwd\n'br \\fBbold"
    page = render(parser)
    assert "\n.so" not in page and "\n'br" not in page and "\\fB" not in page


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
def test_groff_reads_the_page_without_warnings():
    run = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0 and run.stderr == "", run.stderr
