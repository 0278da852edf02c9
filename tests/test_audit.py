"""`mailpubc audit` with Debian's own `postconf` and `doveconf` on the
configurations in tests/audit/CASE/ (policy.yaml, postfix/, dovecot.conf,
expected.out: the report, exit 1 when it holds an error), and the sockets
really listening in a namespace for publications on the firewall itself.
Adding a case is adding a folder."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from cli import run_mailpubc

CASES = sorted((Path(__file__).parent / "audit").iterdir())
needs_tools = pytest.mark.skipif(not (shutil.which("postconf") and shutil.which("doveconf")),
                                 reason="needs Debian's postfix and dovecot-core")


def _args(case: Path) -> list[str]:
    args = ["audit", "policy.yaml"]
    if (case / "postfix").is_dir():
        args += ["--postfix", "postfix"]
    if (case / "dovecot.conf").exists():
        args += ["--dovecot", "dovecot.conf"]
    return args


@needs_tools
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case):
    run = run_mailpubc(*_args(case), cwd=case)
    expected = (case / "expected.out").read_text()
    assert run.stdout == expected, run.stderr
    assert run.returncode == (1 if "\nerror" in "\n" + expected else 0), run.stderr


@needs_tools
def test_json_report_has_the_same_findings():
    case = next(c for c in CASES if c.name == "relay")
    run = run_mailpubc(*_args(case), "--format", "json", cwd=case)
    report = json.loads(run.stdout)
    assert report["errors"] == 2 and run.returncode == 1
    assert [f["level"] for f in report["findings"]] == [
        line.split()[0] for line in (case / "expected.out").read_text().splitlines()]


@needs_tools
def test_an_unreadable_configuration_is_a_usage_error(tmp_path):
    case = next(c for c in CASES if c.name == "clean")
    run = run_mailpubc("audit", case / "policy.yaml", "--postfix", tmp_path / "nothing")
    assert run.returncode == 2 and run.stdout == "" and "postconf" in run.stderr


@pytest.mark.usefixtures("namespaces_work")
def test_the_firewalls_own_publications_meet_its_sockets(namespace, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("""\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
publish:
  - {name: own, server: localhost, external_address: 198.51.100.10,
     services: [smtp, submission]}
""")
    listener = namespace.spawn(sys.executable, "-c",
                               "import socket, time; s = socket.create_server(('', 25)); "
                               "time.sleep(120)", log=str(tmp_path / "listener.log"))
    namespace.wait_listening({("tcp", 25)}, [listener])
    run = run_mailpubc("audit", "--netns", namespace.name, policy)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("ok      own: smtp (IPv4) on port 25: socket")
    assert lines[1] == ("error   own: submission (IPv4) on port 587 is published, but "
                        "nothing listens there")
