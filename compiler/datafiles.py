"""Where the templates and the schema are.

Installed, they are the packages `mailpubc.templates` and `mailpubc.schemas`
(pyproject maps the top-level folders there), folders beside this module; in
a source checkout they are the folders beside `compiler/`. importlib.resources,
a few milliseconds of every start (issue #12), is asked only when neither is
a folder (an installation that is not plain files).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent     # compiler/ in a source checkout


def data_dir(name: str):
    """The folder `name` ("templates" or "schemas") as a Traversable."""
    for folder in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if folder.is_dir():
            return folder
    from importlib import resources
    return resources.files(f"mailpubc.{name}")
