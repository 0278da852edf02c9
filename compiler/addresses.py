"""Address syntax shared by the schema's format checks and the resolver."""

from __future__ import annotations

import ipaddress
import re
from typing import Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


def parse_address(text: str) -> Address | None:
    """An IPv4 or IPv6 address, or None. Zone ids (`fe80::1%eth0`) are not addresses here."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_network(text: str) -> Network | None:
    """ADDRESS/PREFIX with host bits allowed (they are a semantic error, reported later)."""
    if "/" not in text or "%" in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def parse_range(text: str) -> tuple[Address, Address] | None:
    """`A-B` with both ends addresses of one family, or None."""
    low, sep, high = text.partition("-")
    if not sep:
        return None
    first, last = parse_address(low.strip()), parse_address(high.strip())
    if first is None or last is None:
        return None
    return first, last


def is_address_entry(text: str) -> bool:
    """What may stand in an address list: address, network, range or set name."""
    return (parse_address(text) is not None or parse_network(text) is not None
            or parse_range(text) is not None or NAME.fullmatch(text) is not None)


def network_text(network: Network) -> str:
    """A network as nft and people write it: a plain address for a single host."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)
