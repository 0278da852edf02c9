"""Where the templates, the schema and nft's keywords are, read once.

Installed, they are the packages `mailpubc.templates` and `mailpubc.schemas`
(pyproject maps the top-level folders there), folders beside this module; in
a source checkout they are the folders beside `compiler/`. importlib.resources,
a few milliseconds of every start (issue #12), is asked only when neither is
a folder (an installation that is not plain files).
"""

from __future__ import annotations

import os
from functools import lru_cache

PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))     # compiler/ in a source checkout


def data_text(name: str, file: str) -> str:
    """The text of `file` in the folder `name` ("templates" or "schemas")."""
    folder = _folder(name)
    if folder is None:
        from importlib import resources
        return resources.files(f"mailpubc.{name}").joinpath(file).read_text(encoding="utf-8")
    with open(os.path.join(folder, file), encoding="utf-8") as stream:
        return stream.read()


@lru_cache(maxsize=1)
def nft_keywords() -> frozenset[str]:
    """The words nft will not take as a name (nft_keywords.txt, made by
    tools/gen_nft_keywords.py): resolve refuses them as a table name, and the
    generators as any name."""
    with open(os.path.join(PACKAGE_DIR, "nft_keywords.txt")) as file:
        lines = file.read().splitlines()
    return frozenset(line.strip() for line in lines
                     if line.strip() and not line.startswith("#"))


def template_environment(**settings):
    """A Jinja2 environment on the templates folder: undefined names are
    errors, nothing is escaped (nft and unit files are not HTML), a file's
    last newline is kept. `settings` adds to that (whitespace, a cache)."""
    import jinja2       # here: most commands print no template
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: data_text("templates", name)),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
        **settings)


def cache_folder(name: str) -> str | None:
    """`__pycache__` in the folder `name`: where compiled templates are kept,
    as Python keeps compiled modules beside theirs. None when the folder is
    not plain files."""
    folder = _folder(name)
    return None if folder is None else os.path.join(folder, "__pycache__")


def _folder(name: str) -> str | None:
    for folder in (os.path.join(PACKAGE_DIR, name),
                   os.path.join(os.path.dirname(PACKAGE_DIR), name)):
        if os.path.isdir(folder):
            return folder
    return None
