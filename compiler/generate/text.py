"""The text generator: a plan -> nftables text, through the Jinja2 templates
in templates/. The templates print; the filters below are the only way user
text reaches them, through the checks in `generate`.
"""

from __future__ import annotations

import functools
import os
import sys

import jinja2

from ..datafiles import cache_folder, template_environment
from ..plan import Define, Ruleset
from ..vocab import NFT_DAY_NAMES, SET_TYPES
from . import (address_texts, comment, element_lines, host_text, log_prefix, prefix_mask,
               safe_counter_name, safe_name, safe_string)


def _quoted(value: str) -> str:
    return f'"{safe_string(value)}"'


def _live_element(element) -> str:
    """A listed set element as `add element` takes it back, with the time it has left."""
    value = element.value
    text = f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)
    if element.expires is None:
        return text
    return f"{text} timeout {element.timeout}s expires {element.expires}s"


def _element_lines(item) -> list[str]:
    """The elements of a set or a define: through defines where the plan says so."""
    written = item.elements if isinstance(item, Define) else item.written
    if written is None:
        return element_lines(item.family, item.intervals)
    return element_lines(item.family, written.own, written.includes)


class CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Jinja2's own file cache of compiled templates, kept in a folder
    (`datafiles.cache_folder`) as Python keeps compiled modules: compiling
    the templates costs about 20 ms of every run (issue #12). Jinja2 checks
    each entry against the template's source and its own version. Beyond
    Jinja2's: a cache that cannot be read or written is passed over, never an
    error; the folder is made when first written; PYTHONDONTWRITEBYTECODE (or
    -B) keeps it from being written, as it does Python's; `folder` None: no
    cache."""

    def __init__(self, folder: str | None):
        super().__init__(folder or "", "%s.cache")
        self.folder = folder

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if self.folder is None:
            return
        try:
            super().load_bytecode(bucket)
        except Exception:       # unreadable or damaged: compile instead
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if self.folder is None or sys.dont_write_bytecode:
            return
        try:
            os.makedirs(self.folder, exist_ok=True)
            super().dump_bytecode(bucket)       # a temporary file, then renamed
        except OSError:
            pass


@functools.lru_cache(maxsize=8192)
def _printed(part) -> str:
    """A match or statement as its macro prints it, kept: rules repeat their
    parts (an interface, a port, `accept`), and a Jinja2 macro call costs
    more than the lookup (issue #22: 13,000 rules for 1,000 publications)."""
    return str(printers()[part.kind](part))


def environment(cache: str | None) -> jinja2.Environment:
    """The templates' environment, compiled templates kept in `cache`."""
    env = template_environment(trim_blocks=True, lstrip_blocks=True,
                               bytecode_cache=CompiledTemplates(cache))
    env.filters.update(nft_name=safe_name, nft_counter=safe_counter_name, nft_string=_quoted,
                       comment=comment, log_prefix=log_prefix,
                       addresses=lambda match: address_texts(match.family, match.intervals),
                       element_lines=_element_lines, live_element=_live_element,
                       host=lambda value, family: host_text(family, value),
                       mask=lambda meter: prefix_mask(meter.family, meter.prefix),
                       day=NFT_DAY_NAMES.__getitem__, printed=_printed,
                       set_type=SET_TYPES.__getitem__)
    return env


_ENV = environment(cache_folder("templates"))


@functools.cache
def printers() -> dict:
    """The rule template's macro for each plan kind (its `print` table),
    looked up once: Jinja2 checks the template file at every lookup."""
    return _ENV.get_template("rule.nft.j2").module.print


def generate(ruleset: Ruleset) -> str:
    return _ENV.get_template("ruleset.nft.j2").render(ruleset=ruleset)


def transaction_text(steps) -> str:
    """The nft text of one transaction of apply or a rollback (`deploy.transaction`)."""
    return _ENV.get_template("transaction.nft.j2").render(steps=steps)
