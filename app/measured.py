"""Measured scans in the app (``sparsect reconstruct --scan``, the page's "Upload a measured scan").

:func:`prepare` turns the user's choices into the dense (all measured views) and sparse (``--views N``
evenly spaced measured views) scans with one reconstruction grid. A sparse-view study on real data has
no ground truth: scores are against a named method run on the dense scan (:func:`score_label`), and
without one the data-consistency map (:func:`consistency_map`) shows how well an image explains the
measured sinogram.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sparsect import data
from sparsect.app.pipeline import SCORE_DIGITS, MethodOutcome
from sparsect.app.settings import MethodSettings
from sparsect.operators import Radon
from sparsect.reconstruct import metrics, registry
from sparsect.reconstruct.result import Reconstruction, StopLike, stop_requested

REFERENCE_METHODS = ("fbp", "tv")


@dataclass(frozen=True)
class MeasuredInput:
    """A measured scan ready to reconstruct.

    dense : the centred scan with all its measured views; sparse : the views the methods get (``dense`` when
    no subsampling was asked for); image_size : (H, W) pixels; pixel_size_mm : reconstruction pixel size;
    reference : method run on ``dense`` to score against, or None (no scores, data-consistency map instead).
    """

    dense: data.MeasuredScan
    sparse: data.MeasuredScan
    image_size: tuple[int, int]
    pixel_size_mm: float
    reference: str | None

    def geometry(self, scan: data.MeasuredScan) -> Any:
        """The operators geometry of ``scan`` (``dense`` or ``sparse``) on this input's grid."""
        return scan.geometry(self.image_size, self.pixel_size_mm)


def parse_center(value: str | float | None) -> float | str | None:
    """``--center``: None (as the file says), "auto" (estimate from opposing views) or a number of bins."""
    if value is None or isinstance(value, float | int):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    try:
        number = float(text)
    except ValueError:
        raise data.ScanError(f"--center must be auto or a number of detector bins, got {value!r}") from None
    if not math.isfinite(number):
        raise data.ScanError(f"--center must be finite, got {value!r}")
    return number


def prepare(path: str | os.PathLike, geometry: str | os.PathLike | None = None, views: int | None = None,
            center: str | float | None = None, row: int | None = None, size: int | None = None,
            reference: str | None = "auto") -> MeasuredInput:
    """:func:`data.load_scan` (``path``, ``geometry``, ``row``), then :func:`prepare_scan`."""
    return prepare_scan(data.load_scan(path, geometry, row=row), views, center, size, reference)


def prepare_scan(scan: data.MeasuredScan, views: int | None = None, center: str | float | None = None,
                 size: int | None = None, reference: str | None = "auto") -> MeasuredInput:
    """Centre and subsample a measured scan and fix the reconstruction grid.

    Parameters
    ----------
    scan : as read by :func:`data.load_scan` / :func:`data.load_scan_bytes`.
    views : keep this many evenly spaced measured views for the methods; None keeps all.
    center : see :func:`parse_center`.
    size : reconstruction grid size N (N x N); default the detector bin count. The field of view stays the
        detector's at the rotation centre, so the pixel is ``isocentre_pixel_mm * det_count / N``.
    reference : "fbp" or "tv" (run on all measured views), None for no reference, or "auto": FBP when
        views are subsampled, else none.

    Raises :class:`data.ScanError` for unusable settings.
    """
    center = parse_center(center)
    if center == "auto":
        scan = scan.with_center_offset(data.estimate_center_offset(scan))
    elif center is not None:
        scan = scan.with_center_offset(center)
    measured_bins = scan.det_count
    dense = scan.centred()
    sparse = dense if views is None or views == dense.n_views else dense.subsample(views)
    if reference == "auto":
        reference = "fbp" if sparse is not dense else None
    if reference is not None and reference not in REFERENCE_METHODS:
        raise data.ScanError(f"the reference must be one of {', '.join(REFERENCE_METHODS)} or none, got {reference!r}")
    n = measured_bins if size is None else int(size)
    if n < 8:
        raise data.ScanError(f"the image size must be at least 8 pixels, got {size}")
    pixel = dense.isocentre_pixel_mm * measured_bins / n
    return MeasuredInput(dense, sparse, (n, n), pixel, reference)


def score_label(measured: MeasuredInput) -> str | None:
    """What the scores are against, e.g. "against FBP of the dense scan (721 views)"; None without reference."""
    if measured.reference is None:
        return None
    return f"against {measured.reference.upper()} of the dense scan ({measured.dense.n_views} views)"


def consistency_map(mu: np.ndarray | torch.Tensor, measured: MeasuredInput) -> np.ndarray:
    """Data-consistency residual ``A(mu) - y`` over all measured views (line integrals, float32
    (n_views, det_count)), for an (H, W) attenuation image ``mu`` in 1/mm on ``measured``'s grid."""
    image = torch.as_tensor(np.asarray(mu) if not isinstance(mu, torch.Tensor) else mu).detach().cpu().float()
    if tuple(image.shape) != measured.image_size:
        raise ValueError(f"the image is {tuple(image.shape)}, the grid {measured.image_size}")
    predicted = Radon(measured.geometry(measured.dense))(image * measured.pixel_size_mm)
    return (predicted.numpy() - measured.dense.sinogram).astype(np.float32)


@dataclass
class MeasuredOutcome:
    """One method's reconstruction of the sparse measured views, its scores against the reference (empty
    without one) and its data-consistency residual over all measured views."""

    method: str
    reconstruction: Reconstruction
    residual: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)

    def record(self, measured: MeasuredInput) -> dict[str, Any]:
        """The strict-JSON summary of :meth:`app.pipeline.MethodOutcome.record`, plus ``scored_against`` (what
        the scores compare to, None without a reference: then psnr, ssim and rmse_hu are null) and
        ``data_rmse`` (RMS of the data-consistency residual, line-integral units, over all measured views)."""
        scores = self.metrics or dict.fromkeys(SCORE_DIGITS, math.nan)
        record = MethodOutcome(self.method, self.reconstruction, scores).record(measured.sparse.n_views)
        if not self.metrics:
            record.pop("note", None)
        record["scored_against"] = score_label(measured)
        record["data_rmse"] = round(float(np.sqrt(np.mean(self.residual.astype(np.float64) ** 2))), 6)
        return record


def _run(method: str, scan: data.MeasuredScan, measured: MeasuredInput, settings: MethodSettings,
         callback: Callable[[Any], None] | None, stop: StopLike) -> Reconstruction:
    # A measured scan's photon count is unknown (photons=None): TV takes its noise-blind default weight.
    return registry.run(method, torch.from_numpy(scan.sinogram), measured.geometry(scan),
                        pixel_size_mm=measured.pixel_size_mm, iterations=settings.iterations, preset=settings.preset,
                        variant=settings.variant, seed=settings.seed, device=settings.device, callback=callback,
                        stop=stop)


def run_reference(measured: MeasuredInput, device: str = "cpu") -> Reconstruction | None:
    """The reference: ``measured.reference`` on all measured views with its default budget; None without one."""
    if measured.reference is None:
        return None
    return _run(measured.reference, measured.dense, measured, MethodSettings(device=device), None, None)


def run_method(measured: MeasuredInput, method: str, settings: MethodSettings, reference: Reconstruction | None,
               callback: Callable[[Any], None] | None = None, stop: StopLike = None) -> MeasuredOutcome:
    """``method`` on the sparse views, its data-consistency residual over all views, and its scores against
    ``reference`` (from :func:`run_reference`; none without it)."""
    reconstruction = _run(method, measured.sparse, measured, settings, callback, stop)
    residual = consistency_map(reconstruction.mu.reshape(measured.image_size), measured)
    scores = {} if reference is None else {
        key: float(value) for key, value in metrics.compare(reconstruction.image_hu, reference.image_hu).items()}
    return MeasuredOutcome(method, reconstruction, residual, scores)


def run_methods(measured: MeasuredInput, methods: tuple[str, ...], settings: MethodSettings,
                on_progress: Callable[[str, Any], None] | None = None, stop: StopLike = None
                ) -> tuple[Reconstruction | None, list[MeasuredOutcome]]:
    """The reference (:func:`run_reference`) and every method on the sparse views (:func:`run_method`).
    ``stop`` as in :func:`app.pipeline.run_methods`: the running method returns its result so far, the rest
    are skipped."""
    reference = run_reference(measured, settings.device)
    outcomes = []
    for method in methods:
        if stop_requested(stop):
            break
        callback = (lambda progress, m=method: on_progress(m, progress)) if on_progress else None
        outcomes.append(run_method(measured, method, settings, reference, callback, stop))
    return reference, outcomes


__all__ = ["REFERENCE_METHODS", "MeasuredInput", "MeasuredOutcome", "consistency_map", "parse_center", "prepare",
           "prepare_scan", "run_method", "run_methods", "run_reference", "score_label"]
