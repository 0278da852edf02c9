"""Address syntax and arithmetic, shared by the schema's format checks, the
resolver, the semantic checks and the planner.

Address sets are kept as sorted, merged intervals of integers per family, not
as `ipaddress` objects: parsing goes through the C `inet_pton`, merging is
one sort, and a policy with tens of thousands of addresses compiles in a
fraction of a second. Single addresses in rules (servers, external
addresses) stay `ipaddress` objects, which read better in the model.
"""

from __future__ import annotations

import _socket as socket   # not socket.py: 3 ms of every start, for two functions (issue #12)
import bisect
import ipaddress
import re
from typing import Optional, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Interval = tuple[int, int]          # first and last address, inclusive

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
BITS = {4: 32, 6: 128}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def parse_int(text: str) -> Optional[tuple[int, int]]:
    """(version, value) of an IPv4 or IPv6 address in its usual form, or None.

    Zone ids (`fe80::1%eth0`) and IPv4 with leading zeros are refused, as
    `ipaddress` refuses them."""
    version = 6 if ":" in text else 4
    try:
        packed = socket.inet_pton(_FAMILY[version], text)
    except (OSError, ValueError):
        return None
    return version, int.from_bytes(packed, "big")


def parse_port(text: str) -> Optional[int]:
    """A port 1-65535 in ASCII digits, or None. `int` alone takes other
    scripts' digits and signs, and raises on a string of 5,000 digits."""
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536):
        return None
    return int(text)


def parse_address(text: str) -> Optional[Address]:
    parsed = parse_int(text)
    if parsed is None:
        return None
    version, value = parsed
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def parse_network(text: str) -> Optional[tuple[int, int, int]]:
    """(version, address, prefix length) of ADDRESS/PREFIX, or None.
    Host bits are allowed here; they are a semantic error reported later."""
    address, sep, prefix = text.partition("/")
    parsed = parse_int(address)
    if not sep or parsed is None or not prefix.isdigit() or len(prefix) > 3:
        return None
    version, value = parsed
    if int(prefix) > BITS[version]:
        return None
    return version, value, int(prefix)


def parse_range(text: str) -> Optional[tuple[int, int, int, int]]:
    """(version, first, version, last) of `A-B`, or None."""
    low, sep, high = text.partition("-")
    if not sep:
        return None
    first, last = parse_int(low.strip()), parse_int(high.strip())
    if first is None or last is None:
        return None
    return first + last


def is_address_entry(text: str) -> bool:
    """What may stand in an address list: address, network, range or set name."""
    return (parse_int(text) is not None or parse_network(text) is not None
            or parse_range(text) is not None or NAME.fullmatch(text) is not None)


def mapped_ipv4(version: int, value: int) -> Optional[str]:
    """The IPv4 address that an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`,
    in ::ffff:0:0/96) stands for, or None. nft compares such an address with
    IPv6 packets only, so it never matches the IPv4 host it names."""
    if version == 6 and value >> 32 == 0xFFFF:
        return int_text(4, value & 0xFFFFFFFF)
    return None


def host_mask(version: int, prefix: int) -> int:
    return (1 << (BITS[version] - prefix)) - 1


def merge(intervals) -> tuple[Interval, ...]:
    """Sorted intervals with overlapping and adjacent ones joined."""
    ordered = sorted(intervals)
    if not ordered:
        return ()
    merged: list[Interval] = []
    low, high = ordered[0]
    for first, last in ordered:
        if first <= high + 1:
            if last > high:
                high = last
        else:
            merged.append((low, high))
            low, high = first, last
    merged.append((low, high))
    return tuple(merged)


def covers(intervals: tuple[Interval, ...], interval: Interval) -> bool:
    """Does one of `intervals` (sorted and merged) hold all of `interval`? A
    binary search: sets run to hundreds of thousands of intervals."""
    first, last = interval
    index = bisect.bisect_right(intervals, (first, float("inf"))) - 1
    return index >= 0 and intervals[index][1] >= last


def within(inner: tuple[Interval, ...], outer: tuple[Interval, ...],
           present: Optional[frozenset] = None) -> bool:
    """Does `outer` (sorted and merged) hold every interval of `inner`? An
    interval that `outer` has as it is (a host in both, most often) is found
    by hashing; only the rest are looked for by bisection, each from where
    the one before it was found (issue #22: nested sets of tens of
    thousands of hosts compared again and again). `present`: `outer` as a
    set, for a caller that asks about the same outer set often."""
    if len(inner) > 8 and present is None:
        present = frozenset(outer)
    index = 0
    for interval in inner:
        if present is not None and interval in present:
            continue
        index = bisect.bisect_right(outer, (interval[0], float("inf")), index) - 1
        if index < 0 or outer[index][1] < interval[1]:
            return False        # the first one missing ends the search
    return True


def intersect(one: tuple[Interval, ...], other: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """The addresses in both of two merged interval lists. For each interval
    of the shorter list, a bisection finds the run of the longer one it
    overlaps, taken as a slice with its ends clipped: a zone's few networks
    against a set of tens of thousands of hosts costs a few bisections."""
    if len(one) < len(other):
        one, other = other, one
    found: list[Interval] = []
    for low, high in other:
        start = bisect.bisect_left(one, low, key=_high)     # the first that ends at or after low
        stop = bisect.bisect_right(one, high, key=_low)     # past the last that starts by high
        if start >= stop:
            continue
        run = list(one[start:stop])
        run[0] = (max(run[0][0], low), run[0][1])
        run[-1] = (run[-1][0], min(run[-1][1], high))
        found += run
    return tuple(found)


def _low(interval: Interval) -> int:
    return interval[0]


def _high(interval: Interval) -> int:
    return interval[1]


def subtract(intervals, removed) -> tuple[Interval, ...]:
    """The parts of `intervals` outside every interval of `removed`."""
    return difference(merge(intervals), merge(removed))


def difference(kept: tuple[Interval, ...], holes: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """`subtract` for intervals merged already. Either side may hold hundreds
    of thousands, mostly the same intervals (a set less a set it names):
    those go by hashing, and a sweep cuts what is left."""
    # an interval equal to a hole goes whole; no other hole overlaps it, as
    # both sides are merged, so the sweep only needs the holes kept lacks
    hole_set = set(holes)
    rest = [i for i in kept if i not in hole_set]
    if len(kept) - len(rest) == len(holes):
        return tuple(rest)              # every hole was one of kept's intervals
    kept_set = set(kept)
    kept, holes = rest, [i for i in holes if i not in kept_set]
    parts = []
    start = 0                            # the first hole not wholly below the interval
    for first, last in kept:
        while start < len(holes) and holes[start][1] < first:
            start += 1
        index = start
        while index < len(holes) and holes[index][0] <= last:
            low, high = holes[index]
            if low > first:
                parts.append((first, low - 1))
            first = high + 1
            index += 1
        if first <= last:
            parts.append((first, last))
    return tuple(parts)


def int_text(version: int, value: int) -> str:
    """inet_ntop (fast), except where it writes IPv6 in the dotted
    IPv4-compatible or -mapped form: ipaddress's text there."""
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    text = socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))
    return str(ipaddress.IPv6Address(value)) if "." in text else text


def interval_blocks(version: int, interval: Interval) -> list[tuple[int, int]]:
    """An interval as the fewest aligned networks that cover it exactly, as
    (first address, prefix length) pairs."""
    first, last = interval
    blocks = []
    while first <= last:
        # the largest aligned block that starts at `first` and ends by `last`
        size = first & -first if first else 1 << BITS[version]
        while size > last - first + 1:
            size >>= 1
        blocks.append((first, BITS[version] - size.bit_length() + 1))
        first += size
    return blocks


def intervals_texts(version: int, intervals) -> list[str]:
    """Many intervals' texts in order, as `interval_texts` writes them; an
    IPv4 host or network, most of a large set (a block list), takes a shortcut."""
    texts: list[str] = []
    append, extend, ntop = texts.append, texts.extend, socket.inet_ntop
    for low, high in intervals:
        size = high - low + 1
        if version == 4 and size & (size - 1) == 0 and low & (size - 1) == 0:
            text = ntop(socket.AF_INET, low.to_bytes(4, "big"))     # one network, or a host
            append(text if size == 1 else f"{text}/{33 - size.bit_length()}")
        else:
            extend(interval_texts(version, (low, high)))
    return texts


def interval_texts(version: int, interval: Interval) -> list[str]:
    """An interval as networks, as nft and people write them: a plain
    address for a single host."""
    if interval[0] == interval[1]:
        return [int_text(version, interval[0])]
    return [int_text(version, first) if prefix == BITS[version]
            else f"{int_text(version, first)}/{prefix}"
            for first, prefix in interval_blocks(version, interval)]


def split_endpoint(text: str) -> tuple[str, Optional[str]]:
    """`ADDR`, `ADDR:PORT`, `[ADDR]` or `[ADDR]:PORT` as (ADDR, PORT or None):
    an IPv6 address takes brackets to carry a port. ValueError for a bracket
    left open, or anything but `:PORT` after it. Neither part is checked."""
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not [ADDR]:PORT: {text!r}")
        return address, rest[1:] if rest else None
    if text.count(":") == 1:
        address, _, port = text.partition(":")
        return address, port
    return text, None


# -- one entry of an address list: an address, a network or a range ----------------

class EntryError(ValueError):
    """An entry that names no addresses, or not the ones it seems to."""


def mapped_message(text: str, ipv4: str) -> str:
    """nft compares ::ffff:0:0/96 with IPv6 packets only, so an entry written
    so would silently never match the IPv4 hosts it names."""
    return f"{text} is IPv4-mapped IPv6, which never matches IPv4 traffic: write {ipv4}"


def parse_entry(text: str) -> tuple[int, Interval]:
    """One address, network or range as (version, interval); EntryError
    (saying why) for anything else. A network is not tried as an address
    first: a block list holds hundreds of thousands."""
    parsed = None if "/" in text else parse_int(text)
    if parsed is not None:
        ipv4 = mapped_ipv4(*parsed)
        if ipv4 is not None:
            raise EntryError(mapped_message(text, ipv4))
        return parsed[0], (parsed[1], parsed[1])
    network = parse_network(text)
    if network is not None:
        return _network_entry(text, *network)
    bounds = parse_range(text)
    if bounds is not None:
        return _range_entry(text, *bounds)
    raise EntryError(f"{text!r} is not an address, network or range")


def _network_entry(text: str, version: int, value: int, prefix: int) -> tuple[int, Interval]:
    mask = host_mask(version, prefix)
    if value & mask:
        base = int_text(version, value & ~mask)
        raise EntryError(f"{text} has host bits set: did you mean the network "
                         f"{base}/{prefix} or the single address {text.split('/')[0]}?")
    ipv4 = mapped_ipv4(version, value) if prefix >= 96 else None
    if ipv4 is not None:
        raise EntryError(mapped_message(text, f"{ipv4}/{prefix - 96}"))
    return version, (value, value | mask)


def _range_entry(text: str, version: int, first: int, last_version: int,
                 last: int) -> tuple[int, Interval]:
    if version != last_version:
        raise EntryError(f"range {text} mixes IPv4 and IPv6")
    if first > last:
        raise EntryError(f"range {text} ends before it starts")
    ends = [mapped_ipv4(version, end) for end in (first, last)]
    if None not in ends:
        raise EntryError(mapped_message(text, "-".join(ends)))
    if ends != [None, None]:
        raise EntryError(f"range {text} reaches into IPv4-mapped IPv6 addresses "
                         "(::ffff:0:0/96), which never match IPv4 traffic: "
                         "write IPv4 addresses as IPv4")
    return version, (first, last)
