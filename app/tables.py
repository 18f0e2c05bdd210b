"""Terminal tables of ``sparsect reconstruct`` and ``sparsect batch`` that fit an 80-column terminal.

No outer border and no padding at the edges; single-word headers never wrap, headers with a unit
("PSNR dB") wrap at the space, and a cell that still does not fit folds onto a second line instead of
being cut off with an ellipsis, so neither a header nor a number is ever truncated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

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


def iterations_cell(record: dict[str, Any]) -> str:
    """The iterations of a result record (:meth:`app.pipeline.MethodOutcome.record`): "W+N" after W warm-start
    steps, a trailing "*" when Ctrl-C stopped it, "!" when the fit diverged (see :func:`status_captions`)."""
    cell = str(record["iterations"])
    if record.get("warm_start_iterations"):
        cell = f"{record['warm_start_iterations']}+{cell}"
    return cell + {"stopped": "*", "diverged": "!"}.get(record["stop_reason"], "")


def status_captions(records: Sequence[dict[str, Any]]) -> list[str]:
    """The legend of the marks :func:`iterations_cell` put on ``records``, and each record's ``fit_note``."""
    captions = []
    if any(r.get("warm_start_iterations") for r in records):
        captions.append("W+N: W warm-start steps, then N iterations")
    if any(r["stop_reason"] == "stopped" for r in records):
        captions.append("* stopped by Ctrl-C before its iteration budget")
    if any(r["stop_reason"] == "diverged" for r in records):
        captions.append("! diverged: the last good state before the fit blew up")
    captions += [f"{r['method']}: {r['fit_note']}" for r in records
                 if "fit_note" in r and r["stop_reason"] != "diverged"]
    return captions


__all__ = ["WIDTH", "iterations_cell", "narrow_table", "status_captions"]
