"""Bridge netfilter on the internal interface (mailpubc.bridges), on the kernel.

With br_netfilter on, what a bridge forwards between its own ports passes
the inet forward hook, so two LAN hosts behind the firewall's internal
bridge cannot reach each other while the policy's forward chain drops:
`check --live` and `apply` warn, reading the namespace they are given.
The first test shows both on the kernel (the hosts ping each other or
not, the warnings come and go with the sysctl); it needs br_netfilter,
which it loads when it can, else it skips saying why. The others need no
br_netfilter: which interfaces are bridges and what the sysctls say, read
inside a namespace, and the decision.
"""

import shutil
import subprocess

import pytest

from mailpubc import api, bridges, nft
from mailpubc.state import State

from cli import run_mailpubc
from e2e.netns import Namespace

POLICY = """version: 1
firewall:
  external: {interface: eth0, addresses: [198.51.100.10]}
  internal: {interface: lan0, networks: [10.1.0.0/24]}
  policy: {forward: FORWARD}
publish:
  - {name: mail, server: 10.1.0.25, external_address: 198.51.100.10, services: [smtp]}
"""
IPV4_CALL = "net.bridge.bridge-nf-call-iptables"
IPV6_CALL = "net.bridge.bridge-nf-call-ip6tables"
WARNING = ("warning: internal interface lan0 is a bridge and net.bridge.bridge-nf-call-iptables "
           "is 1: IPv4 traffic it bridges between its own ports passes the forward chain, "
           "whose policy (drop) refuses it")


@pytest.fixture
def lan(namespaces, tmp_path, monkeypatch):
    """A firewall namespace whose internal interface lan0 is a bridge with two
    hosts on it (10.1.0.10 and 10.1.0.11), and a state folder of its own."""
    if shutil.which("ping") is None:
        pytest.skip("needs ping (Debian package iputils-ping)")
    monkeypatch.setenv("MAILPUBC_STATE_DIR", str(tmp_path / "state"))
    firewall, *hosts = made = [namespaces(f"br{name}") for name in ("fw", "h1", "h2")]
    try:
        firewall.ip("link", "add", "lan0", "type", "bridge")
        firewall.ip("link", "set", "lan0", "up")
        for number, host in enumerate(hosts, 1):
            firewall.ip("link", "add", f"port{number}", "type", "veth", "peer", "name", "eth0",
                        "netns", host.name)
            firewall.ip("link", "set", f"port{number}", "master", "lan0", "up")
            host.ip("addr", "add", f"10.1.0.{9 + number}/24", "dev", "eth0")
            host.ip("link", "set", "eth0", "up")
        yield made
    finally:
        State.of(firewall.name).remove("pending")


def without_bridge_netfilter(namespace: Namespace) -> str | None:
    """Why the bridge-nf-call sysctls cannot be set in `namespace`, or None;
    loads br_netfilter when they are missing and modprobe can."""
    def present() -> bool:
        return namespace.run("test", "-e", "/proc/sys/net/bridge/bridge-nf-call-iptables",
                             check=False).returncode == 0
    if present():
        return None
    if shutil.which("modprobe") is None:
        return "br_netfilter is not loaded and there is no modprobe to load it"
    loaded = subprocess.run(["modprobe", "br_netfilter"], capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL)
    if loaded.returncode != 0:
        return f"br_netfilter is not loaded and cannot be: {loaded.stderr.strip()}"
    return None if present() else "br_netfilter loaded, yet no bridge-nf-call sysctls here"


def pings(host: Namespace, address: str) -> bool:
    return host.run("ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


def test_lan_traffic_on_a_bridge_is_refused_and_warned_about_while_bridge_netfilter_is_on(
        lan, tmp_path):
    firewall, h1, _ = lan
    reason = without_bridge_netfilter(firewall)
    if reason:
        pytest.skip(reason)
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("FORWARD", "drop"))
    firewall.sysctl(f"{IPV4_CALL}=1", f"{IPV6_CALL}=0")
    checked = run_mailpubc("check", "--live", "--netns", firewall.name, path)
    assert checked.returncode == 0 and WARNING in checked.stderr, checked.stderr
    assert "bridge-nf-call-ip6tables" not in checked.stderr
    applied = run_mailpubc("apply", "--netns", firewall.name, path)
    assert applied.returncode == 0 and WARNING in applied.stderr, applied.stderr
    assert not pings(h1, "10.1.0.11")          # the warning is true: the forward chain drops it
    firewall.sysctl(f"{IPV4_CALL}=0")
    assert pings(h1, "10.1.0.11")
    for command in (("check", "--live"), ("apply",)):
        quiet = run_mailpubc(*command, "--netns", firewall.name, path)
        assert quiet.returncode == 0 and "is a bridge" not in quiet.stderr, quiet.stderr


def test_which_interfaces_are_bridges_is_read_inside_the_namespace(lan):
    """lan0 exists in the firewall's namespace only: /sys/class/net, read
    after setns(), would show the test's own namespace instead."""
    firewall = lan[0]
    assert nft.in_netns(firewall.name, lambda: bridges.bridges_among(
        ["eth1", "port1", "lan0", "lo"])) == ["lan0"]


def test_the_sysctls_are_read_inside_the_namespace(lan):
    firewall, host, _ = lan
    if without_bridge_netfilter(firewall):
        assert nft.in_netns(firewall.name, bridges.netfilter_calls) == []
        return
    firewall.sysctl(f"{IPV4_CALL}=0", f"{IPV6_CALL}=1")
    host.sysctl(f"{IPV4_CALL}=1", f"{IPV6_CALL}=0")
    assert nft.in_netns(firewall.name, bridges.netfilter_calls) == ["bridge-nf-call-ip6tables"]
    assert nft.in_netns(host.name, bridges.netfilter_calls) == ["bridge-nf-call-iptables"]


def test_a_warning_needs_a_refusing_forward_policy_a_bridge_and_a_call_on(lan):
    firewall = lan[0]
    assert bridges.refused([], ["bridge-nf-call-iptables"], "drop") == []
    assert bridges.refused(["lan0"], [], "drop") == []
    (ipv6,) = bridges.refused(["lan0"], ["bridge-nf-call-ip6tables"], "reject")
    assert ipv6.startswith("internal interface lan0 is a bridge and "
                           "net.bridge.bridge-nf-call-ip6tables is 1: IPv6 traffic")
    assert "whose policy (reject) refuses it" in ipv6
    accepting = api.compile_text(POLICY.replace("FORWARD", "accept")).or_raise()
    assert bridges.warnings(accepting.policy.firewall, firewall.name) == []
    external_only = api.compile_text(
        POLICY.replace("FORWARD", "drop").replace("10.1.0.25", "localhost")
        .replace("  internal: {interface: lan0, networks: [10.1.0.0/24]}\n", "")).or_raise()
    assert bridges.warnings(external_only.policy.firewall, firewall.name) == []
