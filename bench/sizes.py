"""The command line of the benchmarks that take sizes: `SCRIPT [N ...]`, and --help."""

from __future__ import annotations

import argparse


def from_command_line(doc: str, defaults: list[int], metavar: str = "N") -> list[int]:
    """The sizes given on the command line, else `defaults`; --help prints `doc`
    (the script's docstring) and a word that is not a number is a usage error."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", metavar=metavar, type=int, nargs="*",
                        help=f"sizes to measure (default: {' '.join(map(str, defaults))})")
    return parser.parse_args().sizes or defaults
