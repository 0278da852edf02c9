"""The packet the evaluator walks, the steps it records, and how an address
and port are written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from ..addresses import int_text
from ..plan import Origin
from ..vocab import VERSIONS

HOP_LIMIT = 64                              # a host's new connection; neighbour discovery uses 255
STOP = "stop"                               # a statement that ends its rule (a limit not hit)
LOOPBACK = {"ip": (0x7F000000, 0x7FFFFFFF), "ip6": (1, 1)}     # 127.0.0.0/8, ::1
LOOPBACK_SOURCE = {"ip": 0x7F000001, "ip6": 1}                # 127.0.0.1, ::1


class UnjudgedKind(RuntimeError):
    """The plan holds a match or statement kind the evaluator cannot judge."""


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of the connection, as the chain walked so far sees it."""

    family: str
    saddr: Optional[int]        # None: the firewall's routing picks it; the policy cannot tell
    daddr: int
    protocol: str               # meta l4proto: tcp, udp, icmp, icmpv6
    dport: Optional[int]        # None for ICMP
    icmp_type: Optional[str]
    iif: Optional[str]
    oif: Optional[str]
    time: datetime              # UTC
    original_saddr: Optional[int]            # before NAT: `ct original ...`
    original_daddr: int
    original_dport: Optional[int]
    uid: Optional[int] = None   # the socket's user, for the firewall's own connections


@dataclass(frozen=True, slots=True)
class Step:
    """What one chain did: the rule that ended it (None: the chain's policy)."""

    chain: str
    origin: Optional[Origin]
    action: str                 # accept, drop, reject, "dnat to ADDR:PORT", "snat to ADDR"


def loopback(family: str, address: int) -> bool:
    low, high = LOOPBACK[family]
    return low <= address <= high


def endpoint(family: str, address: int, port: Optional[int]) -> str:
    """ADDR, ADDR:PORT, or [ADDR]:PORT for IPv6."""
    text = int_text(VERSIONS[family], address)
    if port is None:
        return text
    return f"[{text}]:{port}" if family == "ip6" else f"{text}:{port}"
