"""Address arithmetic against the standard library's ipaddress, on random draws;
how an address and a port are told apart."""

import ipaddress

import pytest
from hypothesis import given, strategies as st

from mailpubc.addresses import (BITS, interval_texts, intervals_texts, merge, parse_int,
                                split_endpoint, subtract, within)


@st.composite
def intervals(draw):
    version = draw(st.sampled_from([4, 6]))
    first = draw(st.integers(0, (1 << BITS[version]) - 1))
    last = draw(st.integers(first, min((1 << BITS[version]) - 1, first + (1 << 40))))
    return version, first, last


def reference_texts(version, first, last):
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
            for n in ipaddress.summarize_address_range(cls(first), cls(last))]


@given(intervals())
def test_interval_texts_is_the_exact_cidr_cover(drawn):
    version, first, last = drawn
    assert interval_texts(version, (first, last)) == reference_texts(version, first, last)


@given(st.sampled_from([4, 6]).flatmap(lambda version: st.tuples(
    st.just(version), st.lists(st.tuples(st.integers(0, (1 << BITS[version]) - 1),
                                         st.integers(0, 3), st.integers(0, BITS[version])),
                               max_size=20))))
def test_intervals_texts_writes_each_interval_as_interval_texts_does(drawn):
    """Short spans anywhere, and whole networks of any size (a block list's)."""
    version, drawn_spans = drawn
    top = (1 << BITS[version]) - 1
    spans = []
    for first, extra, network_bits in drawn_spans:
        spans.append((first, min(top, first + extra)))
        base = first & ~((1 << network_bits) - 1)
        spans.append((base, base + (1 << network_bits) - 1))
    assert intervals_texts(version, spans) == [
        text for first, last in spans for text in reference_texts(version, first, last)]


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), max_size=30))
def test_merge_covers_exactly_the_same_addresses(pairs):
    spans = [(start, start + length) for start, length in pairs]
    merged = merge(spans)
    covered = {a for first, last in spans for a in range(first, last + 1)}
    assert {a for first, last in merged for a in range(first, last + 1)} == covered
    assert all(prev[1] + 1 < nxt[0] for prev, nxt in zip(merged, merged[1:]))


def test_parse_int_refuses_what_ipaddress_refuses():
    for text in ["010.1.1.1", "1.2.3", "fe80::1%eth0", "1.2.3.4.5", "::g", "", " 1.2.3.4"]:
        assert parse_int(text) is None, text
    assert parse_int("2001:db8::1") == (6, int(ipaddress.IPv6Address("2001:db8::1")))
    assert parse_int("192.0.2.1") == (4, int(ipaddress.IPv4Address("192.0.2.1")))


# IPv6 values with long zero runs and embedded IPv4 patterns, where inet_ntop
# and ipaddress differ unless int_text handles them
_ipv6_values = st.one_of(
    st.integers(0, (1 << 128) - 1),
    st.integers(0, (1 << 48) - 1),                                 # ::a.b.c.d, ::ffff:a.b.c.d
    st.builds(lambda word, at: word << (16 * at), st.integers(0, 0xFFFF), st.integers(0, 7)),
)


@given(_ipv6_values)
def test_ipv6_text_is_the_standard_librarys(value):
    from mailpubc.addresses import int_text
    assert int_text(6, value) == str(ipaddress.IPv6Address(value))
    assert interval_texts(6, (value, value)) == [str(ipaddress.IPv6Address(value))]


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), max_size=30),
       st.integers(0, 330), st.integers(0, 30))
def test_covers_is_containment_in_one_interval(spans, first, length):
    from mailpubc.addresses import covers
    intervals = merge((low, low + size) for low, size in spans)
    interval = (first, first + length)
    expected = any(low <= interval[0] and interval[1] <= high for low, high in intervals)
    assert covers(intervals, interval) == expected


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), max_size=10),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), max_size=10))
def test_subtract_leaves_exactly_the_addresses_outside(kept, holes):
    """What routed networks leave of the internal networks to SNAT."""
    spans = [(start, start + length) for start, length in kept]
    removed = [(start, start + length) for start, length in holes]
    covered = {a for first, last in spans for a in range(first, last + 1)}
    gone = {a for first, last in removed for a in range(first, last + 1)}
    parts = subtract(spans, removed)
    assert {a for first, last in parts for a in range(first, last + 1)} == covered - gone
    assert parts == merge(parts)


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), max_size=12),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 20)), max_size=12))
def test_intersect_keeps_exactly_the_addresses_in_both(one, other):
    """A zone's networks against a rule's sources (zone to zone, hairpin)."""
    from mailpubc.addresses import intersect
    a = merge((start, start + length) for start, length in one)
    b = merge((start, start + length) for start, length in other)
    both = intersect(a, b)
    expanded = [{x for first, last in side for x in range(first, last + 1)} for side in (a, b)]
    assert {x for first, last in both for x in range(first, last + 1)} == expanded[0] & expanded[1]
    assert both == merge(both) == intersect(b, a)


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.1", ("192.0.2.1", None)),
    ("192.0.2.1:25", ("192.0.2.1", "25")),
    ("2001:db8::1", ("2001:db8::1", None)),              # no brackets: no port
    ("[2001:db8::1]", ("2001:db8::1", None)),
    ("[2001:db8::1]:587", ("2001:db8::1", "587")),
    ("[2001:db8::1]:", ("2001:db8::1", "")),
])
def test_split_endpoint(text, expected):
    assert split_endpoint(text) == expected


@pytest.mark.parametrize("text", ["[2001:db8::1", "[2001:db8::1]587", "[2001:db8::1]x:1"])
def test_split_endpoint_refuses_a_bracket_not_closed_or_followed_by_other_than_a_port(text):
    with pytest.raises(ValueError):
        split_endpoint(text)


small_intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30)).map(
    lambda start_length: (start_length[0], start_length[0] + start_length[1])), max_size=30)


@given(small_intervals, small_intervals, st.booleans())
def test_within_is_containment_of_every_address(inner, outer, hashed):
    """within() hashes the intervals the outer set has as they are and bisects
    the rest (more than 8 of them; `present` given or not): it answers as an
    address-by-address check does."""
    inner, outer = merge(inner), merge(outer)
    addresses = {a for low, high in outer for a in range(low, high + 1)}
    wanted = all(a in addresses for low, high in inner for a in range(low, high + 1))
    assert within(inner, outer, frozenset(outer) if hashed else None) == wanted
    # the same intervals unmerged on the inside (hosts listed one by one)
    split = tuple((a, a) for low, high in inner for a in range(low, high + 1))
    assert within(split, outer) == wanted
