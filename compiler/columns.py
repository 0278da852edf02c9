"""Text tables as the commands print them: columns two spaces apart."""

from __future__ import annotations

from typing import Iterable, Sequence


def aligned(rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """Each row as a line, every column as wide as its widest cell (the
    columns in `right` aligned right, numbers), no trailing spaces."""
    rows = [list(row) for row in rows]
    right = set(right)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                      for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
            for row in rows]
