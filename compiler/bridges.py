"""Internal interfaces that are bridges, on a host with bridge netfilter on.

With br_netfilter loaded and net.bridge.bridge-nf-call-iptables (IPv4) or
-ip6tables (IPv6) at 1, as Docker and libvirt hosts have them, what a bridge
forwards between two of its ports also passes the inet forward hook, the
bridge being both the input and the output interface. No rule of the policy
accepts LAN to LAN, so on an internal interface that is a bridge the
forward chain's drop or reject policy refuses traffic between the LAN's own
hosts: `apply` and `check --live` warn.

Both facts belong to a network namespace (the sysctls since Linux 5.3).
A thread that entered one with setns() (`nft.in_netns`) reads that
namespace's /proc/sys/net, but /sys/class/net still shows the namespace
sysfs was mounted in (`ip netns exec` mounts it afresh, in a mount
namespace of its own), so whether an interface is a bridge is asked of the
kernel over netlink instead: `ip -details -json link show`, started from
that thread, runs in its namespace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterable, Optional

from . import nft
from .model import Firewall

BRIDGE_SYSCTLS = Path("/proc/sys/net/bridge")
CALLS = {"bridge-nf-call-iptables": "IPv4", "bridge-nf-call-ip6tables": "IPv6"}
IP_SECONDS = 10


def warnings(firewall: Firewall, netns: Optional[str] = None) -> list[str]:
    """The policy's internal interfaces that bridge netfilter would cut, read
    in `netns` (None: where we are); none when the forward policy accepts."""
    if firewall.forward_policy == "accept" or not firewall.zones:
        return []
    interfaces = [zone.interface for zone in firewall.zones]
    bridges, calls = nft.in_netns(netns, lambda: (bridges_among(interfaces), netfilter_calls()))
    return refused(bridges, calls, firewall.forward_policy)


def bridges_among(interfaces: Iterable[str]) -> list[str]:
    """Those of `interfaces` that are bridges in this thread's namespace
    (none when `ip` is missing or fails)."""
    try:
        listed = subprocess.run(["ip", "-details", "-json", "link", "show"], capture_output=True,
                                text=True, timeout=IP_SECONDS, stdin=subprocess.DEVNULL)
        links = json.loads(listed.stdout) if listed.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):     # ValueError: not JSON
        return []
    kinds = {link["ifname"]: link.get("linkinfo", {}).get("info_kind") for link in links}
    return [name for name in interfaces if kinds.get(name) == "bridge"]


def netfilter_calls() -> list[str]:
    """The bridge-nf-call sysctls at 1 in this thread's namespace (none
    without br_netfilter: then the files are not there)."""
    found = []
    for name in CALLS:
        try:
            if (BRIDGE_SYSCTLS / name).read_text().strip() == "1":
                found.append(name)
        except FileNotFoundError:
            pass
    return found


def refused(bridges: Iterable[str], calls: Iterable[str], forward_policy: str) -> list[str]:
    """A warning for each bridge and each bridge-nf-call sysctl that is on."""
    return [f"internal interface {bridge} is a bridge and net.bridge.{call} is 1: "
            f"{CALLS[call]} traffic it bridges between its own ports passes the forward chain, "
            f"whose policy ({forward_policy}) refuses it; set it to 0 unless something on this "
            f"host needs bridge netfilter (Docker, libvirt)"
            for bridge in bridges for call in calls]
