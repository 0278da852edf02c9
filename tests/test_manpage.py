"""`mailpubc --man`: mailpubc(1) from the command line's own definitions,
the same text as the installed man/mailpubc.1, and a page groff reads
without a warning."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cli import run_mailpubc
from mailpubc.cli import _parser
from mailpubc.cli.manpage import render

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "man" / "mailpubc.1"


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
                          "integration", "audit"]
    for option in ("\\-\\-confirm SECONDS", "\\-\\-user NAME|UID", "\\-\\-no\\-nft\\-check",
                   "\\-\\-nameserver IP[:PORT]"):
        assert f".B {option}" in page


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
