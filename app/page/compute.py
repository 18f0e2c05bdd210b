"""Computation behind the Streamlit page's settings, tables and downloads: plain Python (no widgets), so it can be
tested without a browser. Inputs are read in app/page/uploads.py, runs happen in app/page/jobs.py; every table
and download here is made from the run layer's records (:func:`sparsect.app.records.record`)."""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np

from sparsect import data
from sparsect.app import estimates, limits, outputs, records, settings
from sparsect.app.run import Outcome
from sparsect.app.scans import Scan
from sparsect.reconstruct import metrics, registry
from sparsect.reconstruct.neural import ENSEMBLE_SIZE

label = registry.label

#: Sidebar names of the simulations.
SIMULATION_LABELS = {"honest": "Honest (finer grid, exact intersections, 4 rays per bin)",
                     "same-grid": "Same grid (inverse crime)"}


def variant_help() -> str:
    """The help of the "Network fit options" selection: each option's label and its one help text."""
    recommended = "; ".join(f"{registry.label(name)}: " + ", ".join(registry.variant_label(v) for v in names)
                            for name, names in registry.RECOMMENDED_VARIANTS.items())
    lines = [f"- **{registry.variant_label(v.name)}**: {v.help}" for v in registry.VARIANTS.values()
             if v.name not in (registry.PAPER_VARIANT, registry.RECOMMENDED)]
    return ("How the networks are fitted; empty = the published (paper) formulation.\n\n"
            f"- **{registry.variant_label(registry.RECOMMENDED)}** (alone, the default): {recommended}.\n"
            + "\n".join(lines) + f"\n\nA seed ensemble fits {ENSEMBLE_SIZE} networks.")


def variant_options() -> tuple[list[str], list[str]]:
    """(the options of the "Network fit options" selection, those ticked by default): every variant but
    "paper", and "recommended" (each network's own set)."""
    options = [v for v in registry.VARIANT_NAMES if v != registry.PAPER_VARIANT]
    return options, [v for v in settings.recommended_variants() if v in options]


def method_settings(method: str, iterations_classical: int | None, iterations_neural: int | None, preset: str,
                    device: str, variant: Iterable[str] | None = None) -> settings.MethodSettings:
    """The validated MethodSettings a method runs with (classical and network budgets are set separately;
    None: each method's default; a direct method has none).

    ``variant``: the ticked network fit options (empty: the paper formulation; None: the recommended ones).
    """
    spec = registry.method(method)
    iterations = None if not spec.iterative else iterations_neural if spec.is_network else iterations_classical
    return settings.method_settings(iterations, preset, None if variant is None else list(variant), device=device)


#: The page's first working grid is the largest on which the ticked methods are estimated to take under this many
#: seconds on the server.
QUICK_RUN_SECONDS = 60.0


def default_working_size(own_shape: tuple[int, int], sizes: Sequence[int],
                         seconds_at: Callable[[tuple[int, int]], float],
                         limit: float = QUICK_RUN_SECONDS) -> tuple[int | None, float]:
    """The working size the page offers first and the ticked methods' estimated seconds on it: None (the slice's
    own (H, W) grid ``own_shape``) when they take under ``limit`` seconds there, else the largest of ``sizes`` below
    the slice's that does, else the smallest of those. ``seconds_at((H, W))``: their estimated seconds there."""
    seconds = seconds_at(tuple(own_shape))
    smaller = sorted((side for side in sizes if side < max(own_shape)), reverse=True)
    if seconds < limit or not smaller:
        return None, seconds
    for side in smaller:
        seconds = seconds_at((side, side))
        if seconds < limit:
            break
    return side, seconds


def method_estimates(methods: Iterable[str], shape: tuple[int, int], views: int, iterations_classical: int | None,
                     iterations_neural: int | None, preset: str, variant: Iterable[str] | None,
                     calibration: Any = None) -> dict[str, float]:
    """Each method's estimated seconds on this machine (:func:`sparsect.app.estimates.seconds_by_method`) on an
    (H, W) ``shape`` grid from ``views`` views, with the page's settings (as :func:`method_settings`);
    ``calibration``: a :class:`sparsect.reconstruct.calibration.Calibration` (None: this machine's)."""
    chosen = {m: method_settings(m, iterations_classical, iterations_neural, preset, "auto", variant) for m in methods}
    return estimates.seconds_by_method(chosen, shape, views, calibration) if chosen else {}


def check_memory(ct: data.CTSlice, scan: settings.ScanSettings,
                 method_settings: dict[str, settings.MethodSettings]) -> None:
    """:class:`settings.InputError` (one line: what the settings need, what is available, a smaller view
    count or grid that fits) when simulating ``scan`` of ``ct`` and running a method of ``method_settings``
    (method -> its settings) would not fit the memory available."""
    for method, chosen in method_settings.items():
        limits.check_memory(max(ct.hu.shape), scan, (method,), chosen, views_option="Number of views",
                            size_option="working grid")


def run_key(input_key: str, scan: settings.ScanSettings, method: str, method_settings: settings.MethodSettings
            ) -> tuple:
    """Cache key of one reconstruction: the input, the scan and the settings that change ``method``'s result
    (:attr:`sparsect.reconstruct.registry.Method.depends_on`)."""
    relevant = tuple(getattr(method_settings, name) for name in registry.method(method).depends_on)
    return (input_key, astuple(scan), method, relevant)


def status(outcome: Outcome) -> str:
    """"stopped early", "complete", or what :func:`sparsect.app.records.fit_notes` says went wrong in the fit."""
    if outcome.stopped:
        return "stopped early"
    return "; ".join(records.fit_notes(outcome.reconstruction, outcome.index)) or "complete"


#: The metrics table's columns: the record key each shows and whether higher is better (None: not ranked).
TABLE_COLUMNS = {"PSNR (dB)": ("psnr", max), "SSIM": ("ssim", max), "RMSE (HU)": ("rmse_hu", min),
                 "PSNR range (dB)": ("psnr_range", max), "SSIM range": ("ssim_range", max),
                 "RMSE soft tissue (HU)": ("rmse_soft_hu", min), "Data RMSE": ("data_rmse", min),
                 "Time (s)": ("seconds", min), "Iterations": ("iterations", None),
                 "Warm-start steps": ("warm_start_iterations", None), "Parameters": ("parameters", None),
                 "Device": ("device", None)}
#: Columns ranked in the table: the record-derived ones above and the display-window scores.
BEST = {**{column: pick for column, (_key, pick) in TABLE_COLUMNS.items() if pick is not None},
        "PSNR window (dB)": max, "SSIM window": max}

#: What the metrics columns mean, shown under the table.
METRICS_HELP = ("Against the ground truth (the slice area-averaged onto the working grid) inside the reconstruction "
                "circle. PSNR/SSIM: the full CT range, -1024 to 3071 HU, mapped to 0..1. PSNR/SSIM range: the "
                "ground truth's own min..max as the data range (the LRNN and WIRE papers' convention). RMSE soft "
                "tissue: over pixels whose ground truth lies in -200..200 HU, where streaks and smoothing matter "
                "clinically (empty without such pixels). PSNR/SSIM window: inside the display window chosen above, "
                "the contrast you see. Data RMSE: the sinogram residual A x - y, line integrals. Best value per "
                "column highlighted.")


def metrics_rows(outcomes: Sequence[Outcome], truth: np.ndarray | None = None,
                 display_window: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """One row per outcome for the metrics table, made from its record: the method with its fit in words, the
    scores and the run's facts, its status; with ``truth`` and ``display_window`` (low, high HU) also the PSNR and
    SSIM inside that window (what the reader sees)."""
    rows = []
    for outcome in outcomes:
        record = outcome.record()
        row = {"Method": record["fit"], **{column: record[key] for column, (key, _pick) in TABLE_COLUMNS.items()},
               "Status": status(outcome)}
        if truth is not None and display_window is not None:
            scores = metrics.compare(outcome.image_hu, truth, display_window=display_window)
            row["PSNR window (dB)"], row["SSIM window"] = scores["psnr_display"], scores["ssim_display"]
        rows.append(row)
    return rows


def metrics_csv(outcomes: Sequence[Outcome]) -> bytes:
    """The outcomes' records as CSV (UTF-8; the columns of :data:`sparsect.app.records.RECORD_FIELDS`, the
    names of ``sparsect reconstruct --json``): PSNR in dB, RMSE in HU, time in seconds; lists are joined ("+"
    for variants, "x" for the simulation grid)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=records.RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for outcome in outcomes:
        writer.writerow({key: records.csv_cell(value) for key, value in outcome.record().items()})
    return buffer.getvalue().encode("utf-8")


def best_cells(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Row index of the best value in each ranked column the rows have (see :data:`BEST`)."""
    best: dict[str, int] = {}
    if len(rows) < 2:
        return best
    for column, pick in BEST.items():
        if column not in rows[0]:
            continue
        finite = [(float(r[column]), i) for i, r in enumerate(rows)
                  if r[column] is not None and np.isfinite(float(r[column]))]
        if finite:
            best[column] = pick(finite)[1]
    return best


def results_npz(reference: data.CTSlice, scan: Scan, outcomes: Sequence[Outcome],
                scan_settings: settings.ScanSettings) -> bytes:
    """NPZ of the ground truth (the object the scan saw), the slice, the sparse sinogram and every result
    (HU images, loss curves and scores)."""
    simulation = scan.simulation
    arrays: dict[str, Any] = {
        "reference_hu": scan.reference_hu, "slice_hu": reference.hu,
        "sinogram": scan.sinogram.detach().cpu().numpy(),
        "angles_rad": scan.geometry.angles.detach().cpu().numpy(), "slice_spacing_mm": reference.spacing,
        "pixel_spacing_mm": (scan.pixel_size_mm,) * 2, "simulation": simulation.label,
        "simulation_grid": simulation.simulation_grid, "sub_rays": simulation.sub_rays, "views": scan_settings.views,
        "arc_rad": scan_settings.arc, "photons": np.nan if scan_settings.photons is None else scan_settings.photons,
    }
    for outcome in outcomes:
        arrays[f"{outcome.method}_hu"] = outcome.image_hu
        arrays[f"{outcome.method}_curve"] = np.asarray(outcome.reconstruction.curve, dtype=np.float64)
        arrays[f"{outcome.method}_metrics"] = np.array([outcome.scores[k] for k in ("psnr", "ssim", "rmse_hu")])
    return outputs.npz_bytes(arrays)


def dicom_zip(reference: data.CTSlice, outcomes: Sequence[Outcome], views: int, anonymize: bool = True) -> bytes:
    """A .zip (built in memory) of one derived DICOM series per method, de-identified unless asked not to.

    De-identified, every series shows one pseudonymous patient and study (one fresh key per ZIP); each has
    its own SeriesNumber (1001, 1002, ...)."""
    buffer = io.BytesIO()
    anonymizer = data.Anonymizer() if anonymize else False
    with tempfile.TemporaryDirectory(prefix="sparsect-dicom-") as tmp, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, outcome in enumerate(outcomes, start=1001):
            folder = Path(tmp) / outcome.method
            provenance = data.dicom_write.Provenance(
                label(outcome.method), views, fit=records.fit_words(outcome.method, outcome.reconstruction))
            paths = data.write_series(folder, outcome.image_hu, reference, provenance, anonymize=anonymizer,
                                      series_number=number)
            for path in paths:
                archive.write(path, f"{outcome.method}/{path.name}")
    return buffer.getvalue()


__all__ = ["BEST", "METRICS_HELP", "QUICK_RUN_SECONDS", "SIMULATION_LABELS", "TABLE_COLUMNS", "best_cells",
           "check_memory", "default_working_size", "dicom_zip", "label", "method_estimates", "method_settings",
           "metrics_csv", "metrics_rows", "results_npz", "run_key", "status", "variant_help", "variant_options"]
