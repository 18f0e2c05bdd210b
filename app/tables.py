"""Terminal tables of ``sparsect reconstruct`` and ``sparsect batch`` that fit an 80-column terminal, made from
records (:func:`sparsect.app.records.record`).

No outer border and no padding at the edges; single-word headers never wrap, headers with a unit
("PSNR dB") wrap at the space, and a cell that still does not fit folds onto a second line instead of
being cut off with an ellipsis, so neither a header nor a number is ever truncated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table

from sparsect.app.run import scored_against as run_scored_against

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
    """The iterations of a result record (:func:`sparsect.app.records.record`): "W+N" after W warm-start
    steps, a trailing "*" when Ctrl-C stopped it, "!" when the fit diverged (see :func:`status_captions`)."""
    cell = str(record["iterations"])
    if record.get("warm_start_iterations"):
        cell = f"{record['warm_start_iterations']}+{cell}"
    return cell + {"stopped": "*", "diverged": "!"}.get(record["stop_reason"], "")


def status_captions(records: Sequence[dict[str, Any]]) -> list[str]:
    """The legend of the marks :func:`iterations_cell` put on ``records``, each network's fit in words, and each
    record's ``fit_note``."""
    captions = [f"{r['method']}: {r['fit']}" for r in records if r.get("variant") is not None]
    if any(r.get("warm_start_iterations") for r in records):
        captions.append("W+N: W warm-start steps, then N iterations")
    if any(r["stop_reason"] == "stopped" for r in records):
        captions.append("* stopped by Ctrl-C before its iteration budget")
    if any(r["stop_reason"] == "diverged" for r in records):
        captions.append("! diverged: the last good state before the fit blew up")
    captions += [f"{r['method']}: {r['fit_note']}" for r in records
                 if "fit_note" in r and r["stop_reason"] != "diverged"]
    return captions


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def scan_title(scan: Any, result: Any) -> str:
    """The results table's title for a :class:`sparsect.app.scans.Scan` and its :class:`sparsect.app.run.RunResult`:
    the views and what the scores compare against."""
    if scan.measured is not None:
        against = run_scored_against(scan, result.reference)
        return (f"{scan.views} of {scan.check_sinogram.shape[-2]} measured views, "
                + (f"scores against {against}" if against else "no reference: data consistency only"))
    return f"sparse-view reconstruction ({scan.views} views) vs. the full slice"


def results_table(records: list[dict[str, Any]], title: str) -> Table:
    """The results (records of :func:`sparsect.app.records.record`) as a table that fits 80 columns."""
    table = narrow_table(title, ("method", "PSNR dB", "SSIM", "RMSE HU", "seconds", "iterations", "params", "device"),
                         left=("method", "device"))
    for r in records:
        table.add_row(r["method"], _number(r["psnr"], ".2f"), _number(r["ssim"], ".4f"), _number(r["rmse_hu"], ".1f"),
                      f"{r['seconds']:.2f}", iterations_cell(r), str(r["parameters"]), r["device"])
    table.caption = "; ".join(status_captions(records)) or None
    return table


def scores_table(records: list[dict[str, Any]]) -> Table:
    """The reference-range and soft-tissue scores, the data residual, and how the scan was made (fits 80
    columns)."""
    table = narrow_table("scored against the reference's own range and its soft tissue",
                         ("method", "PSNR range dB", "SSIM range", "RMSE soft tissue HU", "data RMSE"))
    for r in records:
        table.add_row(r["method"], _number(r["psnr_range"], ".2f"), _number(r["ssim_range"], ".4f"),
                      _number(r["rmse_soft_hu"], ".1f"), _number(r["data_rmse"], ".4g"))
    first = records[0]
    made = (f"{first['simulation']} simulation ({first['simulation_grid'][0]}x{first['simulation_grid'][1]} grid, "
            f"{first['sub_rays']} ray(s) per bin)" if first["simulation"] else
            f"measured scan ({first['measured_views']} views)")
    table.caption = (f"{made}; range: the reference's min..max inside the circle; soft tissue: reference at "
                     "-200..200 HU; data RMSE: A x - y over every view, line integrals")
    return table


__all__ = ["WIDTH", "iterations_cell", "narrow_table", "results_table", "scan_title", "scores_table",
           "status_captions"]
