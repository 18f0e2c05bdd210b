"""Terminal tables of ``sparsect reconstruct`` and ``sparsect batch`` that fit an 80-column terminal.

No outer border and no padding at the edges; single-word headers never wrap, headers with a unit
("PSNR dB") wrap at the space, and a cell that still does not fit folds onto a second line instead of
being cut off with an ellipsis, so neither a header nor a number is ever truncated.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

#: The width the tables are laid out for (a default terminal).
WIDTH = 80


def narrow_table(title: str, columns: Iterable[str], left: Iterable[str] = ("method",)) -> Table:
    """An empty table with ``columns`` (right-aligned numbers, ``left`` columns left-aligned)."""
    table = Table(title=title, show_edge=False, pad_edge=False)
    left = set(left)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right", overflow="fold",
                         no_wrap=" " not in column)
    return table


__all__ = ["WIDTH", "narrow_table"]
