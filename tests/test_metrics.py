"""`mailpubc stats --format prometheus` scraped by the real Prometheus node
exporter (Debian's prometheus-node-exporter, started by the test in the
firewall's namespace with only its textfile collector, on a loopback port,
never the system service): real SMTP sessions (smtplib against aiosmtpd) to
the firewall's own mail server over IPv4 and IPv6 show up in the scraped
counters of their service and family, and the counts outlive `mailpubc
apply` and a rollback, connections made while the rolled-back ruleset was
live included."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import run_mailpubc

pytestmark = pytest.mark.usefixtures("namespaces_work")

POLICY = """\
version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.11, "2001:db8:100::11"]}
  internal: {interface: eth1, networks: [10.1.0.0/24]}
publish:
  - name: own
    server: localhost
    external_address: [198.51.100.11, "2001:db8:100::11"]
    services: [smtp, submission]
"""
ADDRESSES = {"ipv4": "198.51.100.11", "ipv6": "2001:db8:100::11"}
SMTPD = ("import asyncio; from aiosmtpd.smtp import SMTP; from aiosmtpd.handlers import Sink; "
         "loop = asyncio.new_event_loop(); loop.run_until_complete(loop.create_server("
         "lambda: SMTP(Sink()), host=None, port=25)); loop.run_forever()")
SESSIONS = ("import smtplib, sys\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    s = smtplib.SMTP(sys.argv[1], 25, timeout=5); assert s.ehlo()[0] == 250; s.quit()\n")
EXPORTER = "prometheus-node-exporter"
LISTEN = "127.0.0.1:9100"
SCRAPE = ("import sys, urllib.request; "
          "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")


@pytest.fixture(scope="module")
def lab(module_namespaces, tmp_path_factory):
    """The policy applied on the firewall, an SMTP server on it, a client
    outside, and the node exporter serving the textfile folder."""
    if shutil.which(EXPORTER) is None:
        pytest.skip("needs Debian's prometheus-node-exporter")
    pytest.importorskip("aiosmtpd", reason="needs aiosmtpd (pip install -e .[test])")
    folder = tmp_path_factory.mktemp("metrics")
    firewall, client = module_namespaces("fw"), module_namespaces("client")
    firewall.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                "netns", client.name)
    for address in ("198.51.100.11/24", "2001:db8:100::11/64"):
        firewall.ip("addr", "add", address, "dev", "eth0", "nodad")
    for address in ("198.51.100.20/24", "2001:db8:100::20/64"):
        client.ip("addr", "add", address, "dev", "eth0", "nodad")
    for namespace in (firewall, client):
        namespace.ip("link", "set", "eth0", "up")
    smtpd = firewall.spawn(sys.executable, "-c", SMTPD, log=str(folder / "smtpd.log"))
    textfiles = folder / "textfile"
    textfiles.mkdir()
    exporter = firewall.spawn(EXPORTER, f"--web.listen-address={LISTEN}",
                              "--collector.disable-defaults", "--collector.textfile",
                              f"--collector.textfile.directory={textfiles}",
                              log=str(folder / "exporter.log"))
    firewall.wait_listening({("tcp", 25), ("tcp", 9100)}, [smtpd, exporter])
    policy = folder / "policy.yaml"
    policy.write_text(POLICY)
    env = {"MAILPUBC_STATE_DIR": str(folder / "state"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    lab = Lab(firewall, client, policy, textfiles, env)
    assert lab.mailpubc("apply", "--netns", firewall.name, policy).returncode == 0
    return lab


class Lab:
    def __init__(self, firewall, client, policy: Path, textfiles: Path, env: dict):
        self.firewall, self.client, self.policy = firewall, client, policy
        self.textfiles, self.env = textfiles, env

    def mailpubc(self, *args, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return run_mailpubc(*args, env=self.env, **kwargs)

    def mail(self, family: str, sessions: int) -> None:
        """`sessions` SMTP sessions from the client, each a greeting, EHLO and QUIT."""
        self.client.run(sys.executable, "-c", SESSIONS, ADDRESSES[family], str(sessions),
                        timeout=60)

    def scrape(self) -> dict[tuple, float]:
        """`stats --format prometheus` written where the exporter reads, then
        what the exporter serves: (metric, labels...) -> value, mailpubc's only."""
        from prometheus_client.parser import text_string_to_metric_families
        written = self.mailpubc("stats", "--netns", self.firewall.name, "--format", "prometheus",
                                "-o", self.textfiles / "mailpubc.prom", self.policy)
        assert (written.returncode, written.stdout, written.stderr) == (0, "", "")
        served = self.firewall.run(sys.executable, "-c", SCRAPE, f"http://{LISTEN}/metrics").stdout
        return {(sample.name, sample.labels["kind"], sample.labels["rule"],
                 sample.labels["service"], sample.labels["family"]): sample.value
                for family in text_string_to_metric_families(served)
                for sample in family.samples if sample.name.startswith("mailpubc_")}


def packets(scraped: dict, service: str, family: str) -> float:
    return scraped[("mailpubc_accepted_packets_total", "publish", "own", service, family)]


def test_the_exporter_serves_the_counts_of_real_sessions_by_service_and_family(lab):
    before = lab.scrape()
    assert set(before) == {(metric, "publish", "own", service, family)
                           for metric in ("mailpubc_accepted_packets_total",
                                          "mailpubc_accepted_bytes_total")
                           for service in ("smtp", "submission") for family in ADDRESSES}
    lab.mail("ipv4", 3)
    lab.mail("ipv6", 2)
    after = lab.scrape()
    # one packet a session, its SYN: the rest of a connection is accepted before the counter
    assert packets(after, "smtp", "ipv4") - packets(before, "smtp", "ipv4") == 3
    assert packets(after, "smtp", "ipv6") - packets(before, "smtp", "ipv6") == 2
    assert packets(after, "submission", "ipv4") == packets(after, "submission", "ipv6") == 0
    grown = after[("mailpubc_accepted_bytes_total", "publish", "own", "smtp", "ipv6")] - \
        before[("mailpubc_accepted_bytes_total", "publish", "own", "smtp", "ipv6")]
    assert grown >= 2 * 60          # an IPv6 and a TCP header each, at least


def test_counts_outlive_apply_and_a_rollback(lab, tmp_path):
    lab.mail("ipv4", 1)
    start = packets(lab.scrape(), "smtp", "ipv4")
    assert lab.mailpubc("apply", "--netns", lab.firewall.name, lab.policy).returncode == 0
    assert packets(lab.scrape(), "smtp", "ipv4") == start
    # a policy without submission, applied unconfirmed: sessions while it is
    # live count on, and the rollback keeps them
    other = tmp_path / "other.yaml"
    other.write_text(POLICY.replace("[smtp, submission]", "[smtp]"))
    pending = subprocess.Popen(
        [sys.executable, "-m", "mailpubc", "apply", "--netns", lab.firewall.name,
         "--confirm", "120", other], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=lab.env, text=True)
    try:
        deadline = time.monotonic() + 30
        while lab.mailpubc("diff", "--netns", lab.firewall.name, other).returncode != 0:
            assert time.monotonic() < deadline, "the unconfirmed apply did not load"
            time.sleep(0.2)
        lab.mail("ipv4", 2)
        _, stderr = pending.communicate("n\n", timeout=60)
    finally:
        pending.kill()
    assert "restored the previous state" in stderr, stderr
    diff = lab.mailpubc("diff", "--netns", lab.firewall.name, lab.policy)
    assert (diff.returncode, diff.stdout) == (0, "")
    scraped = lab.scrape()
    assert packets(scraped, "smtp", "ipv4") == start + 2
    assert ("mailpubc_accepted_packets_total", "publish", "own", "submission", "ipv4") in scraped
