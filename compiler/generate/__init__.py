"""Generators: a plan (`plan.Ruleset`) printed as nft text (`text`) or as
libnftables JSON (`json`). Neither decides anything; both print the same plan.

What both need lives here, once: the checks that let user text into a
ruleset, the comment each rule carries, and the text of addresses. The
checks refuse anything they cannot make safe; earlier stages already rejected
such input, so a refusal is a bug, never a silently damaged ruleset.
"""

from __future__ import annotations

import re

from typing import Optional

from ..addresses import BITS, host_mask, int_text, intervals_texts
from ..datafiles import nft_keywords
from ..plan import Log, Origin
from ..vocab import VERSIONS

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_STRING = re.compile(r"[A-Za-z0-9 _.:/@+,=-]{0,127}")
_COUNTER = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]{0,127}")     # nft's identifiers, dots and slashes too


class UnsafeText(ValueError):
    """User text that cannot be put into a ruleset safely."""


def name_ok(value: str) -> bool:
    """An identifier nft reads bare (table and set names)."""
    return bool(_NAME.fullmatch(value)) and value not in nft_keywords()


def safe_name(value: str) -> str:
    if not name_ok(value):
        raise UnsafeText(f"not a safe nft name: {value!r}")
    return value


def counter_name_ok(value: str) -> bool:
    """A counter's name (`Origin.counter_name`), which nft reads bare: an
    identifier that may hold dots and slashes (`publish_x.tcp/2525.ipv4`)."""
    return bool(_COUNTER.fullmatch(value))


def safe_counter_name(value: str) -> str:
    if not counter_name_ok(value):
        raise UnsafeText(f"not a safe nft counter name: {value!r}")
    return value


def safe_string(value: str) -> str:
    """The content of a string nft reads quoted (interface names, comments)."""
    if not _STRING.fullmatch(value):
        raise UnsafeText(f"not a safe nft string: {value!r}")
    return value


def comment(origin: Origin) -> str:
    """A rule's comment: "mailpub" and the words its origin names itself by."""
    return safe_string("mailpub " + " ".join(origin.comment_words))


def log_prefix(log: Log) -> str:
    """A log statement's prefix: "mailpub exchange: ", "mailpub drop input: "."""
    return safe_string("mailpub " + " ".join(log.words) + ": ")


def address_texts(family: str, intervals) -> list[str]:
    return intervals_texts(VERSIONS[family], intervals)


def element_lines(family: str, intervals, includes=(), per_line: int = 8) -> list[str]:
    """A set's elements, `per_line` to a line (20,000 of them in 2,500 lines),
    after the defines it includes."""
    lines = [", ".join("$" + safe_name(name) for name in includes)] if includes else []
    texts = intervals_texts(VERSIONS[family], intervals)
    return lines + [", ".join(texts[i:i + per_line]) for i in range(0, len(texts), per_line)]


def host_text(family: str, value: int) -> str:
    """One address of `family` (an integer in the plan) as nft writes it."""
    return int_text(VERSIONS[family], value)


def prefix_mask(family: str, prefix: int) -> Optional[str]:
    """The netmask a meter's key takes the source address through
    (`ffff:ffff:ffff:ffff::` for an IPv6 /64), or None for a whole address."""
    version = VERSIONS[family]
    if prefix == BITS[version]:
        return None
    return int_text(version, host_mask(version, 0) ^ host_mask(version, prefix))
