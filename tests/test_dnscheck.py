"""`mailpubc dns-check` against a real Knot DNS server.

Knot serves the zones in tests/dnscheck/zones/ (one file per zone, named
after it: a correct zone, a broken one and their reverse zones) on the
loopback of a network namespace of its own; the command runs inside that
namespace. Each tests/dnscheck/NAME.yaml is a policy and NAME.out the exact
standard output; the exit status must be 1 when the output has a FAIL line,
else 0. Adding a case is adding the two files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli import run_mailpubc
from e2e import netns
from e2e.services import _wait_zones_loaded

HERE = Path(__file__).resolve().parent / "dnscheck"
ZONES = sorted((HERE / "zones").glob("*.zone"))
CASES = sorted(HERE.glob("*.yaml"))
INVALID = Path(__file__).resolve().parent.parent / "golden" / "err-unknown-key" / "policy.yaml"


@pytest.fixture(scope="module")
def knot_home():
    """Knot's folder: short (its control socket's path is limited) and, set
    up before the namespace, removed after Knot stops with the namespace."""
    if shutil.which("knotd") is None:
        pytest.skip("needs knotd (Debian package knot)")
    home = netns.scratch_dir()
    home.chmod(0o755)
    yield home
    netns.remove_dir(home)


@pytest.fixture(scope="module")
def dns_ns(knot_home, module_namespaces):
    """A namespace with Knot answering on 127.0.0.1:53 for the fixture zones."""
    home = knot_home
    ns = module_namespaces("dnscheck")
    zones = "".join(f"  - domain: {zone.stem}\n" for zone in ZONES)
    (home / "knot.conf").write_text(f"""\
server:
    rundir: {home}
    listen: [ 127.0.0.1@53 ]
log:
  - target: {home}/knot.log
    any: info
database:
    storage: {home}
template:
  - id: default
    storage: {HERE / "zones"}
    file: "%s.zone"
zone:
{zones}""")
    knot = ns.spawn("knotd", "-c", str(home / "knot.conf"), log=str(home / "knotd.out"))
    ns.wait_listening({("udp", 53), ("tcp", 53)}, [knot])
    _wait_zones_loaded(home / "knot.log", zones=len(ZONES))
    return ns


def dns_check(ns, *args) -> subprocess.CompletedProcess:
    """`mailpubc dns-check ARGS` run inside the namespace, as users run it."""
    command = [sys.executable, "-m", "mailpubc", "dns-check", *map(str, args)]
    return subprocess.run(ns.argv(*command), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case(dns_ns, case):
    expected = case.with_suffix(".out").read_text(encoding="utf-8")
    run = dns_check(dns_ns, "--nameserver", "127.0.0.1", case)
    assert run.stderr == ""
    assert run.stdout == expected
    assert run.returncode == (1 if "\nFAIL" in "\n" + expected else 0)


def test_json_report(dns_ns):
    run = dns_check(dns_ns, "--nameserver", "127.0.0.1:53", "--format", "json",
                    HERE / "broken.yaml")
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] is False
    assert [(c["record"], c["ok"], c["rcode"]) for c in report["checks"]] == \
        [("A", False, None), ("PTR", False, "NXDOMAIN"), ("MX", False, None)]
    assert report["checks"][0]["found"] == ["198.51.100.99"]


@pytest.mark.parametrize("nameserver, shown", [("127.0.0.1:5353", "127.0.0.1 (port 5353)"),
                                                ("127.0.0.2", "127.0.0.2 (port 53)")])
def test_unreachable_dns_exits_2(dns_ns, nameserver, shown):
    """Nothing listens there: no answer within the timeout, said once
    (dnspython's text repeats itself for each of its tries)."""
    run = dns_check(dns_ns, "--nameserver", nameserver, "--timeout", "2.5",
                    HERE / "correct.yaml")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == ("mailpubc: DNS unreachable: A mail.example.com: "
                          f"no answer within 2.5 s from {shown}\n")


def test_refused_everywhere_exits_2(dns_ns, tmp_path):
    """Knot refuses a zone it does not serve: every nameserver failed."""
    policy = tmp_path / "policy.yaml"
    policy.write_text((HERE / "correct.yaml").read_text().replace("example.com", "example.net"))
    run = dns_check(dns_ns, "--nameserver", "127.0.0.1", policy)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == ("mailpubc: DNS unreachable: A mail.example.net: "
                          "no nameserver could answer: REFUSED\n")


def test_invalid_policy_exits_2_with_positioned_errors():
    run = run_mailpubc("dns-check", "--nameserver", "127.0.0.1", INVALID)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.startswith(f"{INVALID}:") and ": error: " in run.stderr


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "0", "-1", "1e999", "86400"])
def test_a_timeout_that_is_no_duration_is_usage_error(timeout):
    """Refused before any query: `nan` once made dnspython wait for ever."""
    run = subprocess.run([sys.executable, "-m", "mailpubc", "dns-check", "--nameserver",
                          "192.0.2.1", f"--timeout={timeout}", str(HERE / "correct.yaml")],
                         capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout) == (2, "")
    assert "not a number of seconds" in run.stderr


@pytest.mark.parametrize("nameserver", ["localhost", "127.0.0.1:0", "[::1]x", "::1:99999x"])
def test_bad_nameserver_is_usage_error(nameserver):
    run = run_mailpubc("dns-check", "--nameserver", nameserver, HERE / "correct.yaml")
    assert run.returncode == 2
    assert "is not IP, IP:PORT or [IPv6]:PORT" in run.stderr
