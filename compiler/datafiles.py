"""Where the templates and the schema are.

Installed, they are the packages `mailpubc.templates` and `mailpubc.schemas`
(pyproject maps the top-level folders there); in a source checkout that was
not installed they are the folders beside `compiler/`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_dir(name: str):
    """The folder `name` ("templates" or "schemas") as a Traversable."""
    try:
        return resources.files(f"mailpubc.{name}")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / name
