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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sparsect import data

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
    """Load, centre and subsample a measured scan.

    Parameters
    ----------
    path, geometry, row : as for :func:`data.load_scan`.
    views : keep this many evenly spaced measured views for the methods; None keeps all.
    center : see :func:`parse_center`.
    size : reconstruction grid size N (N x N); default the detector bin count. The field of view stays the
        detector's at the rotation centre, so the pixel is ``isocentre_pixel_mm * det_count / N``.
    reference : "fbp" or "tv" (run on all measured views), None for no reference, or "auto": FBP when
        views are subsampled, else none.

    Raises :class:`data.ScanError` for unusable files or settings.
    """
    scan = data.load_scan(path, geometry, row=row)
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
    from sparsect.operators import Radon

    image = torch.as_tensor(np.asarray(mu) if not isinstance(mu, torch.Tensor) else mu).detach().cpu().float()
    if tuple(image.shape) != measured.image_size:
        raise ValueError(f"the image is {tuple(image.shape)}, the grid {measured.image_size}")
    predicted = Radon(measured.geometry(measured.dense))(image * measured.pixel_size_mm)
    return (predicted.numpy() - measured.dense.sinogram).astype(np.float32)


__all__ = ["REFERENCE_METHODS", "MeasuredInput", "consistency_map", "parse_center", "prepare", "score_label"]
