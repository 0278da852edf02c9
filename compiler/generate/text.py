"""The text generator: a plan -> nftables text, through the Jinja2 templates
in templates/. The templates print; the filters below are the only way user
text reaches them, through the checks in `generate`.
"""

from __future__ import annotations

import jinja2

from ..datafiles import data_dir
from ..plan import Define, Ruleset
from ..vocab import NFT_DAY_NAMES, SET_TYPES
from . import address_texts, comment, element_lines, host_text, log_prefix, safe_name, safe_string


def _quoted(value: str) -> str:
    return f'"{safe_string(value)}"'


def _element_lines(item) -> list[str]:
    """The elements of a set or a define: through defines where the plan says so."""
    written = item.elements if isinstance(item, Define) else item.written
    if written is None:
        return element_lines(item.family, item.intervals)
    return element_lines(item.family, written.own, written.includes)


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
    env.filters.update(nft_name=safe_name, nft_string=_quoted, comment=comment, log_prefix=log_prefix,
                       addresses=lambda match: address_texts(match.family, match.intervals),
                       element_lines=_element_lines,
                       host=lambda value, family: host_text(family, value),
                       day=NFT_DAY_NAMES.__getitem__,
                       set_type=SET_TYPES.__getitem__)
    return env


_ENV = _environment()


def generate(ruleset: Ruleset) -> str:
    return _ENV.get_template("ruleset.nft.j2").render(ruleset=ruleset)
