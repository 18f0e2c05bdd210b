"""Computation behind the Streamlit page: inputs, simulation, background runs, result caching, downloads.

Everything here is plain Python (no widgets) so it can be tested without a browser. The page keeps the
objects below in ``st.session_state``; nothing uploaded is ever written to disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsect import data
from sparsect.app import limits, outputs, pipeline, settings
from sparsect.data.hu import MU_WATER, mu_to_hu
from sparsect.reconstruct import metrics, registry
from sparsect.reconstruct.consistency import data_consistency_hu
from sparsect.reconstruct.fit import PHASE_STEPS
from sparsect.reconstruct.neural import ENSEMBLE_SIZE

log = logging.getLogger("sparsect.page")

#: DICOM attributes that identify a patient, study or institution; shown only when the user asks.
IDENTIFYING_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
                      "StudyTime", "AccessionNumber", "StudyID", "InstitutionName", "ReferringPhysicianName",
                      "OperatorsName", "StationName")


label = registry.label


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------

@dataclass
class UploadSummary:
    """What a set of uploaded files holds: CT series (largest first), skipped files and a fatal error."""

    series: list[data.CTSeries] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    digest: str = ""


def upload_digest(files: Sequence[tuple[str, bytes]]) -> str:
    """A content hash of named uploads (used as the cache key of everything derived from them)."""
    h = hashlib.sha256()
    for name, content in files:
        h.update(name.encode("utf-8", "replace") + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()[:16]


def read_uploads(files: Sequence[tuple[str, bytes]]) -> UploadSummary:
    """Scan uploaded files (DICOM files and/or .zip archives) in memory; never raises for bad files.

    Returns an :class:`UploadSummary` whose ``error`` is a user-facing message when nothing is usable.
    """
    files = [(str(name), bytes(content)) for name, content in files]
    summary = UploadSummary(digest=upload_digest(files))
    if not files:
        summary.error = "No file uploaded."
        return summary
    try:
        result = data.scan_bytes(files)
    except data.DicomError as exc:
        summary.error = str(exc)
        return summary
    except Exception as exc:  # a reader bug must not show a traceback
        log.exception("reading uploads failed")
        summary.error = f"The upload could not be read ({type(exc).__name__}: {exc})."
        return summary
    summary.series, summary.skipped = list(result.series), list(result.skipped)
    if not summary.series:
        if len(summary.skipped) == 1:
            name, reason = summary.skipped[0]
            detail = f"{Path(name).name}: {reason}. "
        else:
            detail = f"{len(summary.skipped)} files skipped (reasons below). " if summary.skipped else ""
        summary.error = ("No usable CT image in the upload. " + detail
                         + "Upload CT DICOM files (a series, or a .zip of its folder).")
    return summary


def series_label(series: data.CTSeries) -> str:
    """Non-identifying description of a series: description, slice count and matrix size."""
    n, h, w = series.shape
    return f"{series.description or 'CT series'} - {n} slice(s), {h}x{w}"


def prepare_slice(ct: data.CTSlice, size: int | None) -> data.CTSlice:
    """``ct`` as the scan's source for a ``size`` working grid (:func:`sparsect.app.pipeline.source_slice`):
    unchanged when square, since the honest simulation scans its own pixels; the working grid is
    ``ScanSettings.size``. A slice that cannot be scored (too small, constant) raises
    :class:`settings.InputError`, as in ``sparsect reconstruct``."""
    return pipeline.check_slice(pipeline.source_slice(ct, size))


def check_memory(ct: data.CTSlice, scan: settings.ScanSettings,
                 method_settings: dict[str, settings.MethodSettings]) -> None:
    """:class:`settings.InputError` (one line: what the settings need, what is available, a smaller view
    count or grid that fits) when simulating ``scan`` of ``ct`` (as :func:`prepare_slice` made it) and running
    a method of ``method_settings`` (method -> its settings) would not fit the memory available."""
    for method, chosen in method_settings.items():
        limits.check_memory(max(ct.hu.shape), scan, (method,), chosen, views_option="Number of views",
                            size_option="working grid")


def identifying_fields(ct: data.CTSlice) -> dict[str, str]:
    """Identifying DICOM attributes of ``ct``'s header that are present (for an explicit opt-in view)."""
    ds = ct.dataset
    if ds is None:
        return {}
    return {k: str(ds.get(k)) for k in IDENTIFYING_FIELDS if k in ds and str(ds.get(k) or "").strip()}


def describe(ct: data.CTSlice) -> dict[str, Any]:
    """Non-identifying facts about a slice for display."""
    keep = ("series_description", "manufacturer", "model", "kvp", "tube_current_ma", "convolution_kernel",
            "slice_thickness_mm", "slice_index", "resampled_from")
    info: dict[str, Any] = {"matrix": f"{ct.hu.shape[0]} x {ct.hu.shape[1]}",
                            "pixel spacing (mm)": f"{ct.spacing[0]:.3g} x {ct.spacing[1]:.3g}",
                            "HU range": f"{float(ct.hu.min()):.0f} to {float(ct.hu.max()):.0f}"}
    for key in keep:
        value = ct.meta.get(key)
        if value not in (None, ""):
            info[key.replace("_", " ")] = value if not isinstance(value, tuple) else " x ".join(map(str, value))
    return info


class LRU(OrderedDict):
    """A small least-recently-used dict (``get``/``put``) for per-session caches."""

    def __init__(self, capacity: int = 8) -> None:
        super().__init__()
        self.capacity = capacity

    def get(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


# ----------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------

#: Sidebar names of the network fit variants ("paper", the published formulation, is no ticked option:
#: it is what an empty selection gives).
VARIANT_LABELS = {"ramp_loss": "Ramp-weighted loss", "fbp_init": "FBP warm start", "tv_init": "TV warm start",
                  "tv": "TV penalty", "coarse_to_fine": "Coarse to fine", "wls": "Poisson-weighted loss",
                  "discrepancy": "Stop at the noise level", "positive": "Non-negative attenuation",
                  "tv_blend": "Blend with TV", "band_blend": "Blend with TV by frequency band",
                  "ensemble": "Seed ensemble (uncertainty)", "recommended": "Each network's recommended fit"}
VARIANT_HELP = ("How the networks are fitted; empty = the published (paper) formulation.\n\n"
                "- **Each network's recommended fit** (alone, the default): "
                + "; ".join(f"{registry.label(name)}: " + ", ".join(VARIANT_LABELS[v] for v in names)
                            for name, names in registry.RECOMMENDED_VARIANTS.items()) + ".\n"
                "- **Ramp-weighted loss**: the sinogram error is weighted by the ramp filter, a preconditioner "
                "worth several dB at the same iteration budget.\n"
                "- **FBP warm start**: the network first learns the FBP image, then fits the sinogram.\n"
                "- **TV warm start**: the same from the TV image (not with the FBP warm start).\n"
                "- **TV penalty**: a small total-variation term against streaks and noise.\n"
                "- **Poisson-weighted loss**: each ray weighted by its inverse noise variance.\n"
                "- **Stop at the noise level**: the fit ends once its residual reaches the expected noise "
                "(needs a photon count).\n"
                "- **Non-negative attenuation**: a softplus keeps the image >= -1000 HU.\n"
                "- **Blend with TV**: the image is the mean of the network's and TV's; the two err in "
                "different ways.\n"
                "- **Blend with TV by frequency band**: mostly TV's image at coarse scales and mostly the network's "
                "at fine ones, where each errs less (instead of the plain blend).\n"
                "- **Coarse to fine**: the coordinate scale ramps up over the first half of the fit.\n"
                f"- **Seed ensemble**: {ENSEMBLE_SIZE} networks from different seeds; the image is their mean and the "
                f"*Uncertainty* maps show their per-pixel spread ({ENSEMBLE_SIZE}x the work).")


#: Sidebar names of the simulations.
SIMULATION_LABELS = {"honest": "Honest (finer grid, exact intersections, 4 rays per bin)",
                     "same-grid": "Same grid (inverse crime)"}


def variant_options() -> tuple[list[str], list[str]]:
    """(the options of the "Network fit options" selection, those ticked by default): every variant but
    "paper", and "recommended" (each network's own set)."""
    options = [v for v in registry.VARIANT_NAMES if v != registry.PAPER_VARIANT]
    return options, [v for v in settings.recommended_variants() if v in options]


def variant_label(name: str) -> str:
    """Display name of a fit variant."""
    return VARIANT_LABELS.get(name, name)


def method_settings(method: str, iterations_classical: int | None, iterations_neural: int | None, preset: str,
                    device: str, variant: Iterable[str] | None = None) -> settings.MethodSettings:
    """The validated MethodSettings a method runs with (classical and network budgets are set separately;
    None: each method's default).

    ``variant``: the ticked network fit options (empty: the paper formulation; None: the recommended ones).
    """
    iterations = iterations_neural if method in registry.NETWORK_METHODS else iterations_classical
    if method == "fbp":
        iterations = None
    return settings.method_settings(iterations, preset, None if variant is None else list(variant), device=device)


def run_key(input_key: str, scan: settings.ScanSettings, method: str, method_settings: settings.MethodSettings
            ) -> tuple:
    """Cache key of one reconstruction: only the settings that change ``method``'s result are included."""
    s = method_settings
    if method == "fbp":
        relevant: tuple = (s.device,)
    elif method in registry.CLASSICAL_METHODS:
        relevant = (s.iterations, s.device)
    else:
        relevant = (s.iterations, s.preset, s.seed, s.device, s.variant)
    return (input_key, astuple(scan), method, relevant)


@dataclass
class MethodRun:
    """A finished (or stopped) reconstruction with its scores against the ground truth."""

    method: str
    reconstruction: Any
    metrics: dict[str, float]
    stopped: bool = False
    #: the data-consistency map (HU), computed once when the run finished; None: not computed
    consistency_hu: np.ndarray | None = None

    @property
    def image_hu(self) -> np.ndarray:
        return self.reconstruction.image_hu

    @property
    def status(self) -> str:
        """"stopped early", "complete", or what :func:`app.pipeline.fit_notes` says went wrong in the fit."""
        if self.stopped:
            return "stopped early"
        return "; ".join(pipeline.fit_notes(self.reconstruction)) or "complete"

    def row(self) -> dict[str, Any]:
        r = self.reconstruction
        return {"Method": label(self.method), "PSNR (dB)": self.metrics["psnr"], "SSIM": self.metrics["ssim"],
                "RMSE (HU)": self.metrics["rmse_hu"], "PSNR range (dB)": self.metrics["psnr_range"],
                "SSIM range": self.metrics["ssim_range"], "RMSE soft tissue (HU)": self.metrics["rmse_soft_hu"],
                "Time (s)": float(r.seconds),
                "Iterations": int(r.iterations), "Warm-start steps": int(r.warm_start_iterations),
                "Parameters": int(r.n_parameters), "Device": str(r.device),
                "Status": self.status}


@dataclass
class Progress:
    """Live state of one method in a background run (read by the page, written by the worker)."""

    method: str
    status: str = "queued"  # queued, running, done, stopped, cancelled, error
    iteration: int = 0
    iterations: int | None = None
    phase: str = "fit"  # "warm_start" while a network is pre-fitted to its warm-start image
    loss: float | None = None
    started: float | None = None
    finished: float | None = None
    preview_hu: np.ndarray | None = None
    preview_iteration: int = 0
    error: str | None = None

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fraction(self) -> float:
        if self.status in ("done", "stopped"):
            return 1.0 if self.status == "done" else min(1.0, self.iteration / max(1, self.iterations or 1))
        if self.iterations:
            return min(1.0, self.iteration / self.iterations)
        return 0.0

    def text(self, name: str | None = None) -> str:
        name = name or label(self.method)
        parts = [name]
        if self.status == "queued":
            return f"{name}: waiting"
        if self.status == "cancelled":
            return f"{name}: not run (stopped)"
        if self.status == "error":
            return f"{name}: failed"
        if self.iterations:
            step = PHASE_STEPS.get(self.phase, "iteration")
            parts.append(f"{step} {self.iteration}/{self.iterations}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3e}")
        parts.append(f"{self.elapsed:.1f} s")
        if self.status == "stopped":
            parts.append("stopped, result kept")
        elif self.status == "done":
            parts.append("done")
        return " | ".join(parts)


@dataclass
class Task:
    key: tuple
    method: str
    settings: settings.MethodSettings


class Job:
    """Runs methods one after the other on a background thread, with progress and a stop request.

    The worker never touches Streamlit; the page polls :attr:`progress` and collects :attr:`results`.
    """

    def __init__(self, tasks: Iterable[Task], simulation: data.Simulation,
                 runner: Callable[..., Any] = pipeline.run_method) -> None:
        self.tasks = list(tasks)
        self.simulation, self.pixel_size_mm = simulation, float(simulation.pixel_size_mm)
        self.progress = {t.method: Progress(t.method) for t in self.tasks}
        self.results: dict[tuple, MethodRun] = {}
        self.stop_event = threading.Event()
        self.collected = False
        self._runner = runner
        self._thread = threading.Thread(target=self._run, name="sparsect-run", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def request_stop(self) -> None:
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self.running

    def _callback(self, progress: Progress) -> Callable[[Any], None]:
        def update(state: Any) -> None:
            progress.phase = getattr(state, "phase", "fit")
            progress.iteration = int(getattr(state, "iteration", progress.iteration))
            progress.iterations = int(getattr(state, "iterations", 0) or 0) or progress.iterations
            loss = getattr(state, "loss", None)
            progress.loss = float(loss) if loss is not None else None
            image = getattr(state, "image", None)
            if image is not None:
                mu = np.asarray(image, dtype=np.float32) / self.pixel_size_mm
                progress.preview_hu = np.asarray(mu_to_hu(mu, MU_WATER, clip_negative=False), dtype=np.float32)
                progress.preview_iteration = progress.iteration

        return update

    def _execute(self, task: Task, progress: Progress) -> tuple[Any, dict[str, float]]:
        """One task's reconstruction and its scores (a subclass may run and score differently)."""
        reconstruction = self._runner(task.method, self.simulation, task.settings,
                                      callback=self._callback(progress), stop=self.stop_event)
        return reconstruction, pipeline.score(reconstruction.image_hu, self.simulation)

    def _consistency(self, reconstruction: Any) -> np.ndarray | None:
        """A finished reconstruction's data-consistency map (HU) for its MethodRun (a subclass may keep none)."""
        return data_consistency_hu(reconstruction.mu, self.simulation.sinogram, self.simulation.geometry,
                                   self.pixel_size_mm)

    def _run(self) -> None:
        for task in self.tasks:
            progress = self.progress[task.method]
            if self.stop_event.is_set():
                progress.status = "cancelled"
                continue
            progress.status, progress.started = "running", time.perf_counter()
            progress.iterations = registry.iterations_for(task.method, task.settings.iterations, task.settings.preset)
            try:
                reconstruction, scores = self._execute(task, progress)
                consistency = self._consistency(reconstruction)
            except Exception as exc:  # shown as a message on the page, never as a traceback
                log.exception("%s failed", task.method)
                progress.status, progress.finished = "error", time.perf_counter()
                progress.error = f"{label(task.method)} failed: {exc}"
                continue
            stopped = getattr(reconstruction, "stop_reason", "completed") == "stopped"
            progress.iteration = int(reconstruction.iterations) or progress.iteration
            if not progress.iterations:
                progress.iterations = int(reconstruction.iterations) or None
            progress.status, progress.finished = ("stopped" if stopped else "done"), time.perf_counter()
            self.results[task.key] = MethodRun(task.method, reconstruction, scores, stopped=stopped,
                                               consistency_hu=consistency)


# ----------------------------------------------------------------------------------------------------
# Tables and downloads
# ----------------------------------------------------------------------------------------------------

#: Metrics-table columns and whether higher is better (others are not ranked).
BEST = {"PSNR (dB)": max, "SSIM": max, "RMSE (HU)": min, "PSNR range (dB)": max, "SSIM range": max,
        "RMSE soft tissue (HU)": min, "PSNR window (dB)": max, "SSIM window": max, "Time (s)": min}

#: What the metrics columns mean, shown under the table.
METRICS_HELP = ("Against the ground truth (the slice area-averaged onto the working grid) inside the reconstruction "
                "circle. PSNR/SSIM: the full CT range, -1024 to 3071 HU, mapped to 0..1. PSNR/SSIM range: the "
                "ground truth's own min..max as the data range (the LRNN and WIRE papers' convention). RMSE soft "
                "tissue: over pixels whose ground truth lies in -200..200 HU, where streaks and smoothing matter "
                "clinically (empty without such pixels). PSNR/SSIM window: inside the display window chosen above, "
                "the contrast you see. Best value per column highlighted.")


def metrics_rows(runs: Sequence[MethodRun], truth: np.ndarray | None = None,
                 display_window: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """One row per run for the metrics table; with ``truth`` and ``display_window`` (low, high HU) also the PSNR
    and SSIM inside that window (what the reader sees), scored as :func:`sparsect.app.pipeline.score` does."""
    rows = [run.row() for run in runs]
    if truth is not None and display_window is not None:
        for row, run in zip(rows, runs, strict=True):
            scores = metrics.compare(run.image_hu, truth, display_window=display_window)
            row["PSNR window (dB)"], row["SSIM window"] = scores["psnr_display"], scores["ssim_display"]
    return rows


#: Columns of the metrics CSV download (the names of ``sparsect reconstruct --json``).
CSV_COLUMNS = ("method", "views", "psnr", "ssim", "rmse_hu", "psnr_range", "ssim_range", "rmse_soft_hu", "seconds",
               "iterations", "warm_start_iterations", "parameters", "device", "status", "simulation",
               "simulation_grid", "sub_rays")


def metrics_csv(runs: Sequence[MethodRun], views: int, simulation: data.Simulation) -> bytes:
    """The metrics table as CSV (UTF-8), unrounded: PSNR in dB, RMSE in HU, time in seconds; every row names
    the simulation that made the scan, its grid ("HxW") and the rays per detector bin."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    height, width = simulation.simulation_grid
    for run in runs:
        r = run.reconstruction
        writer.writerow({"method": run.method, "views": int(views),
                         **{key: run.metrics[key] for key in pipeline.SCORE_DIGITS}, "seconds": float(r.seconds),
                         "iterations": int(r.iterations), "warm_start_iterations": int(r.warm_start_iterations),
                         "parameters": int(r.n_parameters), "device": str(r.device),
                         "status": run.status, "simulation": simulation.label,
                         "simulation_grid": f"{height}x{width}", "sub_rays": simulation.sub_rays})
    return buffer.getvalue().encode("utf-8")


def best_cells(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Row index of the best value in each ranked column the rows have (see :data:`BEST`)."""
    best: dict[str, int] = {}
    if len(rows) < 2:
        return best
    for column, pick in BEST.items():
        if column not in rows[0]:
            continue
        values = [float(r[column]) for r in rows]
        finite = [(v, i) for i, v in enumerate(values) if np.isfinite(v)]
        if finite:
            best[column] = pick(finite)[1]
    return best


def results_npz(reference: data.CTSlice, simulation: data.Simulation, runs: Sequence[MethodRun],
                scan: settings.ScanSettings) -> bytes:
    """NPZ of the ground truth (the object the scan saw), the slice, the sparse sinogram and every result
    (HU images and loss curves)."""
    arrays: dict[str, Any] = {
        "reference_hu": simulation.reference_hu, "slice_hu": reference.hu,
        "sinogram": simulation.sinogram.detach().cpu().numpy(),
        "angles_rad": simulation.geometry.angles.detach().cpu().numpy(), "slice_spacing_mm": reference.spacing,
        "pixel_spacing_mm": (simulation.pixel_size_mm,) * 2, "simulation": simulation.label,
        "simulation_grid": simulation.simulation_grid, "sub_rays": simulation.sub_rays, "views": scan.views,
        "arc_rad": scan.arc, "photons": np.nan if scan.photons is None else scan.photons,
    }
    for run in runs:
        arrays[f"{run.method}_hu"] = run.image_hu
        arrays[f"{run.method}_curve"] = np.asarray(run.reconstruction.curve, dtype=np.float64)
        arrays[f"{run.method}_metrics"] = np.array([run.metrics["psnr"], run.metrics["ssim"], run.metrics["rmse_hu"]])
    return outputs.npz_bytes(arrays)


def dicom_zip(reference: data.CTSlice, runs: Sequence[MethodRun], views: int, anonymize: bool = True) -> bytes:
    """A .zip (built in memory) of one derived DICOM series per method, de-identified unless asked not to.

    De-identified, every series shows one pseudonymous patient and study (one fresh key per ZIP); each has
    its own SeriesNumber (1001, 1002, ...)."""
    buffer = io.BytesIO()
    anonymizer = data.Anonymizer() if anonymize else False
    with tempfile.TemporaryDirectory(prefix="sparsect-dicom-") as tmp, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, run in enumerate(runs, start=1001):
            folder = Path(tmp) / run.method
            paths = data.write_series(folder, run.image_hu, reference, f"{label(run.method)} {views} views",
                                      anonymize=anonymizer, series_number=number)
            for path in paths:
                archive.write(path, f"{run.method}/{path.name}")
    return buffer.getvalue()
