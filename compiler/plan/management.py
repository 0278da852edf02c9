"""The rules of `firewall.management`: SSH and ping to the firewall itself."""

from __future__ import annotations

from ..model import Firewall
from ..vocab import ECHO, FAMILIES, SSH
from .fixed import ACCEPT
from .ir import Origin, PortMatch, Rule
from .matching import address_match, dports


def ssh(fw: Firewall) -> list[Rule]:
    sources = fw.ssh_sources
    if sources is None:
        return []
    origin = Origin("management", "ssh", position=sources.position)
    port = fw.ssh_port
    return [Rule(origin, (saddr, PortMatch(SSH.protocol, port, port)), (ACCEPT,))
            for family in FAMILIES
            if (saddr := address_match(sources, family, "saddr")) is not None]


def ping(fw: Firewall) -> list[Rule]:
    """Echo requests to the firewall itself, per family its sources have."""
    sources = fw.ping_sources
    if sources is None:
        return []
    origin = Origin("management", "ping", position=sources.position)
    rules = []
    for family in FAMILIES:
        saddr = None if sources.any else address_match(sources, family, "saddr")
        if sources.any or saddr is not None:
            echo, = dports(ECHO, (family,))
            rules.append(Rule(origin, (*([saddr] if saddr else []), echo), (ACCEPT,)))
    return rules
