"""``sparsect reconstruct --scan FILE [--geometry FILE.json]``: reconstruct a measured scan.

Called by :func:`app.cli.reconstruct`, which parses the shared options; everything is checked before any
reconstruction runs. ``--views N`` keeps N evenly spaced measured views; scores are against ``--reference``
(FBP by default when views were dropped) on all measured views, and every score says so. ``--out DIR``
receives PNGs, ``results.npz``, ``metrics.json`` and ``dicom/<method>/`` (and ``dicom/reference/``): derived
CT series of one synthetic study without patient identity, to open in a DICOM viewer or send to a PACS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from sparsect import data
from sparsect.app import measured, outputs, stopping
from sparsect.app.settings import InputError, MethodSettings
from sparsect.app.tables import iterations_cell, status_captions
from sparsect.data.dicom_write import synthetic_source


def parse_reference(value: str | None) -> str | None:
    """``--reference``: fbp, tv, none, or None (automatic: FBP when views are dropped)."""
    if value is None:
        return "auto"
    text = value.strip().lower()
    if text == "none":
        return None
    if text not in measured.REFERENCE_METHODS:
        raise InputError(f"--reference must be fbp, tv or none, got {value!r}")
    return text


#: The derived series' SeriesNumbers: the reference's, then the methods' in order.
REFERENCE_SERIES, FIRST_METHOD_SERIES = 1000, 1001


def _planned(methods: tuple[str, ...]) -> dict[str, str]:
    return {"comparison.png": "file", "residual_sinograms.png": "file", "results.npz": "file", "metrics.json": "file",
            "dicom": "folder", "dicom/reference": "folder", **{f"{name}.png": "file" for name in methods},
            **{f"dicom/{name}": "folder" for name in methods}}


def reconstruct_scan(path: str, methods: tuple[str, ...], method_settings: MethodSettings, *,
                     geometry: str | None, views: int | None, center: str | None, row: int | None,
                     size: int | None, reference: str | None, out: Path | None, window: str, as_json: bool,
                     console: Console) -> list[dict[str, Any]]:
    """Run ``methods`` on the measured scan at ``path``; print and (with ``out``) write the results.

    Returns the records; raises :class:`InputError` / :class:`data.ScanError` for bad settings or files and
    ``typer.Exit`` (130) after a graceful Ctrl-C stop.
    """
    if views is not None and views < 2:
        raise InputError(f"--views must be at least 2, got {views}")
    if out is not None and out.resolve() == Path(path).resolve():
        raise InputError("--out must not be the scan path; inputs are never overwritten")
    prepared = measured.prepare(path, geometry, views=views, center=center, row=row, size=size,
                                reference=parse_reference(reference))
    staging = outputs.Staging(out, _planned(methods)) if out is not None else None
    try:
        with stopping.GracefulStop(lambda _signum: console.print("[yellow]stopping after the current iteration[/]")
                                   ) as graceful:
            reference_image, outcomes = measured.run_methods(prepared, methods, method_settings, stop=graceful.event)
        records = [outcome.record(prepared) for outcome in outcomes]
        if as_json:
            for record in records:
                typer.echo(json.dumps(record, allow_nan=False))
        elif records:
            _print_table(prepared, records)
        if staging is not None and outcomes:
            written = _write(staging, prepared, reference_image, outcomes, records, window)
            if not as_json:
                console.print(f"wrote {len(written)} files to {out}")
    finally:
        if staging is not None:
            staging.discard()
    if graceful.received:
        raise typer.Exit(stopping.EXIT_INTERRUPTED)
    return records


def _print_table(prepared: measured.MeasuredInput, records: list[dict[str, Any]]) -> None:
    label = measured.score_label(prepared)
    table = Table(title=f"{prepared.sparse.n_views} of {prepared.dense.n_views} measured views, "
                        + (f"scores {label}" if label else "no reference: data consistency only"))
    columns = ("method", "views", "PSNR dB", "SSIM", "RMSE HU", "data RMSE", "seconds", "iterations", "device")
    for column in columns:
        table.add_column(column, justify="left" if column in ("method", "device") else "right")

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in records:
        table.add_row(r["method"], str(r["views"]), number(r["psnr"], ".2f"), number(r["ssim"], ".4f"),
                      number(r["rmse_hu"], ".1f"), f"{r['data_rmse']:.4g}", f"{r['seconds']:.2f}",
                      iterations_cell(r), r["device"])
    table.caption = "; ".join(status_captions(records)) or None
    Console().print(table)


def _write(staging: outputs.Staging, prepared: measured.MeasuredInput, reference: Any,
           outcomes: list[measured.MeasuredOutcome], records: list[dict[str, Any]], window: str) -> list[Path]:
    folder = staging.folder
    images = {o.method: o.reconstruction.image_hu for o in outcomes}
    if reference is not None:
        images = {f"{prepared.reference} (all views)": reference.image_hu} | images
    outputs.write_png(folder / "comparison.png", outputs.comparison_image(images, window))
    scale = max(float(abs(o.residual).max()) for o in outcomes) or 1.0
    outputs.write_png(folder / "residual_sinograms.png", outputs.comparison_image(
        {f"{o.method} A x - y": o.residual for o in outcomes}, (-scale, scale)))
    arrays = {"sinogram": prepared.dense.sinogram, "angles_rad": prepared.dense.angles,
              "views_used": prepared.sparse.angles, "pixel_size_mm": prepared.pixel_size_mm,
              **{f"{o.method}_hu": o.reconstruction.image_hu for o in outcomes},
              **{f"{o.method}_residual": o.residual for o in outcomes}}
    if reference is not None:
        arrays["reference_hu"] = reference.image_hu
    outputs.write_npz(folder / "results.npz", arrays)
    outputs.write_json(folder / "metrics.json", {"scan": prepared.dense.provenance(), "records": records})
    for o in outcomes:
        outputs.write_png(folder / f"{o.method}.png", outputs.comparison_image({o.method: images[o.method]}, window))
    _write_dicom(folder / "dicom", prepared, reference, outcomes)
    return staging.commit()


def _write_dicom(folder: Path, prepared: measured.MeasuredInput, reference: Any,
                 outcomes: list[measured.MeasuredOutcome]) -> None:
    """Each image as a derived CT series of one synthetic study (no patient: a measured file names none), the
    study's UIDs derived from the measured sinogram and the grid, so every series of one scan joins it."""
    dense, sparse = prepared.dense, prepared.sparse
    content = (np.ascontiguousarray(dense.sinogram, dtype=np.float32).tobytes()
               + repr((dense.n_views, dense.det_count, prepared.image_size, prepared.pixel_size_mm)).encode())
    header = synthetic_source(content, "MEASURED", f"Measured {dense.beam}-beam scan, {dense.n_views} views")
    source = data.CTSlice(hu=np.zeros(prepared.image_size, np.float32),
                          spacing=(prepared.pixel_size_mm, prepared.pixel_size_mm), dataset=header)
    if reference is not None:
        data.write_series(folder / "reference", reference.image_hu, source,
                          f"{prepared.reference.upper()} reference {dense.n_views} of {dense.n_views} measured views",
                          series_number=REFERENCE_SERIES)
    for number, o in enumerate(outcomes, start=FIRST_METHOD_SERIES):
        data.write_series(folder / o.method, o.reconstruction.image_hu, source,
                          f"{o.method.upper()} {sparse.n_views} of {dense.n_views} measured views",
                          series_number=number)


__all__ = ["parse_reference", "reconstruct_scan"]
