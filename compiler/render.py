"""Render stage: the plan -> nftables text, through the Jinja2 templates.

All quoting lives here, in two filters, so no other code can put user text
into a rule: `nft_name` for identifiers nft reads bare (table and set names)
and `nft_string` for quoted strings (interface names, comments, the schedules' zone).
Both refuse anything they cannot make safe; earlier stages already rejected
such input, so a refusal here is a bug, never a silently damaged ruleset.
"""

from __future__ import annotations

import re

import jinja2

from .datafiles import data_dir
from .plan import Ruleset
from .resolve import nft_keywords

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_STRING = re.compile(r"[A-Za-z0-9 _.:/@+,=-]{0,127}")


class UnsafeText(ValueError):
    """User text that cannot be put into a ruleset safely."""


def nft_name(value: str) -> str:
    if not _NAME.fullmatch(value) or value in nft_keywords():
        raise UnsafeText(f"not a safe nft name: {value!r}")
    return value


def nft_string(value: str) -> str:
    if not _STRING.fullmatch(value):
        raise UnsafeText(f"not a safe nft string: {value!r}")
    return f'"{value}"'


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: data_dir("templates").joinpath(name).read_text(encoding="utf-8")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["nft_name"] = nft_name
    env.filters["nft_string"] = nft_string
    return env


_ENV = _environment()


def render(ruleset: Ruleset) -> str:
    return _ENV.get_template("ruleset.nft.j2").render(ruleset=ruleset)
