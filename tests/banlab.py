"""The lab the ban feeders' tests share (tests/test_fail2ban.py,
tests/test_crowdsec.py): a firewall namespace with the policy applied, a
client outside and a mail server behind it, aiosmtpd listening on the
firewall (published as own4/own6, input) and on the server (mx4/mx6, DNAT
and forward), and the probes that tell which published SMTP the client
reaches. Run-time sets: `banned` (fed by operators: fail2ban) and
`crowdsec` (fed by CrowdSec's firewall bouncer)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import run_mailpubc
from mailpubc import nft

POLICY = """\
version: 1
firewall:
  external:
    interface: eth0
    addresses: [198.51.100.10, 198.51.100.11, "2001:db8:100::10", "2001:db8:100::11"]
  internal: {interface: eth1, networks: [10.1.0.0/24, "fd00:1::/64"]}
  dynamic_block: [banned, {name: crowdsec, feeder: crowdsec}]
publish:
  - {name: own4, server: localhost, external_address: 198.51.100.10, services: [smtp]}
  - {name: own6, server: localhost, external_address: "2001:db8:100::10", services: [smtp]}
  - {name: mx4, server: 10.1.0.25, external_address: 198.51.100.11, services: [smtp]}
  - {name: mx6, server: "fd00:1::25", external_address: "2001:db8:100::11", services: [smtp]}
outbound:
  - {name: mx-out, from: [10.1.0.25, "fd00:1::25"], services: [smtp, dns]}
"""
CLIENT = {4: "192.0.2.100", 6: "2001:db8:2::100"}
PUBLISHED = {4: ["198.51.100.10", "198.51.100.11"], 6: ["2001:db8:100::10", "2001:db8:100::11"]}
SMTPD = ("import asyncio; from aiosmtpd.smtp import SMTP; from aiosmtpd.handlers import Sink; "
         "loop = asyncio.new_event_loop(); loop.run_until_complete(loop.create_server("
         "lambda: SMTP(Sink()), host=None, port=25)); loop.run_forever()")
SMTP_CLIENT = ("import smtplib, sys; s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), "
               "timeout=1.5); print(s.ehlo()[0]); s.quit()")


def wire(firewall, client, server) -> None:
    firewall.sysctl("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    for ifname, peer, mine, theirs in (
            ("eth0", client, ["192.0.2.1/24", "2001:db8:2::1/64"],
             ["192.0.2.100/24", "2001:db8:2::100/64"]),
            ("eth1", server, ["10.1.0.1/24", "fd00:1::1/64"], ["10.1.0.25/24", "fd00:1::25/64"])):
        firewall.ip("link", "add", ifname, "type", "veth", "peer", "name", "eth0",
                    "netns", peer.name)
        for address in mine:
            firewall.ip("addr", "add", address, "dev", ifname, "nodad")
        for address in theirs:
            peer.ip("addr", "add", address, "dev", "eth0", "nodad")
        peer.ip("link", "set", "eth0", "up")
        firewall.ip("link", "set", ifname, "up")
        gateway = mine[0].split("/")[0], mine[1].split("/")[0]
        peer.ip("route", "add", "default", "via", gateway[0])
        peer.ip("-6", "route", "add", "default", "via", gateway[1])
    for address in ("198.51.100.10", "198.51.100.11", "2001:db8:100::10", "2001:db8:100::11"):
        firewall.ip("addr", "add", address, "dev", "eth0", "nodad")


def reaches(client, address: str, port: int = 25) -> bool:
    run = subprocess.run(client.argv(sys.executable, "-c", SMTP_CLIENT, address, str(port)),
                         capture_output=True, text=True, timeout=20)
    return run.returncode == 0 and run.stdout.strip() == "250"


def reachable(client) -> dict[str, bool]:
    return {address: reaches(client, address) for family in (4, 6)
            for address in PUBLISHED[family]}


def elements(firewall, family: int, stem: str = "banned") -> str:
    listed = nft.list_ruleset(netns=firewall.name)
    sets = [item["set"] for item in listed["nftables"] if "set" in item
            and item["set"]["name"] == f"{stem}_v{family}"]
    return str(sets[0].get("elem", [])) if sets else "no such set"


def build(make, folder: Path) -> tuple:
    """The lab in namespaces from `make`: (firewall, client, policy, state, folder)."""
    pytest.importorskip("aiosmtpd", reason="needs aiosmtpd (pip install -e .[test])")
    firewall, client, server = (make(n) for n in ("fw", "client", "mx"))
    wire(firewall, client, server)
    for namespace in (firewall, server):
        smtpd = namespace.spawn(sys.executable, "-c", SMTPD, log=str(folder / "smtpd.log"))
        namespace.wait_listening({("tcp", 25)}, [smtpd])
    policy = folder / "policy.yaml"
    policy.write_text(POLICY)
    state = folder / "state"
    assert mailpubc(state, "apply", "--netns", firewall.name, policy).returncode == 0
    return firewall, client, policy, state, folder


def mailpubc(state: Path, *args, **kwargs) -> subprocess.CompletedProcess:
    """The command, with its state folder in the lab's."""
    env = {"MAILPUBC_STATE_DIR": str(state), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return run_mailpubc(*args, env=env, stdin=subprocess.DEVNULL, **kwargs)


def until(test, what: str, seconds: float = 30) -> None:
    """Wait for `test()` to hold, failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds}s for: {what}")
        time.sleep(0.2)
