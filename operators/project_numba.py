"""Compiled CPU kernels (numba) for the matrix-free projector and for building its sparse matrix.

Each kernel walks the rays of :class:`operators.rays.StripRays` strip by strip and computes every
weight on the fly with :func:`_pixel_pair`, so the forward projection, its adjoint and the CSR matrix
share one formula. Images are (B, H * W) and sinograms (B, R), C-contiguous. The images of a batch
are projected one after the other, each by all threads: that keeps one image's working set in cache,
and a ray's walk with a scalar accumulator is faster than sharing one walk between the images.

Kernels are compiled on first use and cached on disk next to this file (numba ``cache=True``).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numba
import torch

# Numba's fallback threading layer (workqueue) aborts on concurrent parallel calls; the page runs
# reconstructions in a thread beside its main thread, so calls into the kernels take turns.
_LOCK = threading.Lock()


@contextlib.contextmanager
def kernel_call() -> Iterator[int]:
    """Hold the kernels' lock with numba's thread count set to torch's (so ``torch.set_num_threads``
    limits both); yields that thread count."""
    with _LOCK:
        threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(threads)
        yield threads


@numba.njit(cache=True, inline="always")
def _strip_range(offset: float, slope: float, n_strips: int, n_across: int) -> tuple[int, int]:
    """First and one-past-last strip where the ray can have a nonzero weight (centre in (-1.5, n + 1))."""
    if slope == 0.0:
        if -1.5 < offset < n_across + 1.0:
            return 0, n_strips
        return 0, 0
    a = (-1.5 - offset) / slope
    b = (n_across + 1.0 - offset) / slope
    low = max(min(a, b), 0.0)
    high = min(max(a, b), float(n_strips))
    if high < low:
        return 0, 0
    return int(math.floor(low)), min(n_strips, int(math.ceil(high)) + 1)


@numba.njit(cache=True, inline="always")
def _pixel_pair(centre: float, slope: float, linear: bool) -> tuple[int, float]:
    """Lower pixel (across the strip) and its share of the strip's path; pixel ``lower + 1`` gets the rest."""
    if linear:
        lower = math.floor(centre)
        return int(lower), 1.0 - (centre - lower)
    half = 0.5 * abs(slope)
    start = centre - half
    lower = math.floor(start + 0.5)
    if half > 0.0:
        return int(lower), min((lower + 0.5 - start) / (2.0 * half), 1.0)
    return int(lower), 1.0


@numba.njit(cache=True, inline="always")
def _layout(steep: bool, height: int, width: int) -> tuple[int, int, int, int]:
    """(strips, pixels across, stride of a strip step, stride of an across step) in the flat image."""
    if steep:
        return height, width, width, 1
    return width, height, 1, width


@numba.njit(parallel=True, cache=True)
def project(images, steep, offset, slope, path, height, width, linear, out):  # pragma: no cover - compiled
    """Forward projection: ``out[b, r] = sum_pixels weight(r, pixel) * images[b, pixel]``.

    ``images`` (B, H * W), ``out`` (B, R); the rays of each image are shared out between the threads.
    """
    for b in range(images.shape[0]):
        image = images[b]
        for r in numba.prange(offset.shape[0]):
            n_strips, n_across, strip_stride, across_stride = _layout(steep[r], height, width)
            first, last = _strip_range(offset[r], slope[r], n_strips, n_across)
            ray_offset, ray_slope = offset[r], slope[r]
            total = 0.0
            for s in range(first, last):
                lower, share = _pixel_pair(ray_offset + ray_slope * s, ray_slope, linear)
                base = s * strip_stride + lower * across_stride
                if 0 <= lower < n_across:
                    total += share * image[base]
                if 0 <= lower + 1 < n_across:
                    total += (1.0 - share) * image[base + across_stride]
            out[b, r] = total * path[r]


@numba.njit(parallel=True, cache=True)
def backproject(sinograms, steep, offset, slope, path, height, width, linear, buffers):  # pragma: no cover
    """Adjoint: ``buffers[t, b, pixel] += weight(r, pixel) * sinograms[b, r]`` for the rays of part ``t``.

    ``sinograms`` (B, R), ``buffers`` (parts, B, H * W), zeroed by the caller. The rays are split into
    contiguous parts, one per thread, so no two threads write the same buffer; the caller sums the
    buffers over the parts.
    """
    n_parts, n_rays = buffers.shape[0], offset.shape[0]
    for b in range(sinograms.shape[0]):
        for t in numba.prange(n_parts):
            image = buffers[t, b]
            for r in range(t * n_rays // n_parts, (t + 1) * n_rays // n_parts):
                n_strips, n_across, strip_stride, across_stride = _layout(steep[r], height, width)
                first, last = _strip_range(offset[r], slope[r], n_strips, n_across)
                ray_offset, ray_slope = offset[r], slope[r]
                value = sinograms[b, r] * path[r]
                for s in range(first, last):
                    lower, share = _pixel_pair(ray_offset + ray_slope * s, ray_slope, linear)
                    base = s * strip_stride + lower * across_stride
                    if 0 <= lower < n_across:
                        image[base] += share * value
                    if 0 <= lower + 1 < n_across:
                        image[base + across_stride] += (1.0 - share) * value


@numba.njit(parallel=True, cache=True)
def row_counts(steep, offset, slope, height, width, linear, counts):  # pragma: no cover - compiled
    """Number of nonzero weights of every ray (the CSR row lengths), written to ``counts`` (R,)."""
    for r in numba.prange(offset.shape[0]):
        n_strips, n_across, _, _ = _layout(steep[r], height, width)
        first, last = _strip_range(offset[r], slope[r], n_strips, n_across)
        count = 0
        for s in range(first, last):
            lower, share = _pixel_pair(offset[r] + slope[r] * s, slope[r], linear)
            if 0 <= lower < n_across and share > 0.0:
                count += 1
            if 0 <= lower + 1 < n_across and share < 1.0:
                count += 1
        counts[r] = count


@numba.njit(parallel=True, cache=True)
def fill_rows(steep, offset, slope, path, height, width, linear, crow, col, val):  # pragma: no cover
    """Column indices and weights of every ray into ``col``/``val`` at ``crow[r]`` (unsorted within a row)."""
    for r in numba.prange(offset.shape[0]):
        n_strips, n_across, strip_stride, across_stride = _layout(steep[r], height, width)
        first, last = _strip_range(offset[r], slope[r], n_strips, n_across)
        k = crow[r]
        for s in range(first, last):
            lower, share = _pixel_pair(offset[r] + slope[r] * s, slope[r], linear)
            base = s * strip_stride + lower * across_stride
            if 0 <= lower < n_across and share > 0.0:
                col[k] = base
                val[k] = share * path[r]
                k += 1
            if 0 <= lower + 1 < n_across and share < 1.0:
                col[k] = base + across_stride
                val[k] = (1.0 - share) * path[r]
                k += 1


@numba.njit(cache=True)
def transpose(crow, col, val, n_cols, t_crow, t_col, t_val):  # pragma: no cover - compiled
    """CSR transpose by counting sort; the result's columns come out sorted within every row."""
    t_crow[:] = 0
    for k in range(col.shape[0]):
        t_crow[col[k] + 1] += 1
    for j in range(n_cols):
        t_crow[j + 1] += t_crow[j]
    fill = t_crow[:-1].copy()
    for i in range(crow.shape[0] - 1):
        for k in range(crow[i], crow[i + 1]):
            j = col[k]
            t_col[fill[j]] = i
            t_val[fill[j]] = val[k]
            fill[j] += 1



@numba.njit(parallel=True, cache=True)
def backproject_pixels(filtered, cos, sin, height, width, det_spacing, source_distance, detector_distance, scale,
                       out):  # pragma: no cover - compiled
    """Weighted pixel-driven backprojection of FBP: every pixel takes the linearly interpolated value of
    ``filtered`` (B, n_angles, det_count) at its detector position in each view, times ``scale`` and,
    for fan beams (``source_distance > 0``), the distance weight (source_distance / distance)^2.
    Writes ``out`` (B, H, W); the image rows are shared out between the threads."""
    n_views, det_count = filtered.shape[1], filtered.shape[2]
    fan = source_distance > 0.0
    centre = (det_count - 1) / 2
    for b in range(filtered.shape[0]):
        for row in numba.prange(height):
            y = (height - 1) / 2 - row
            line = out[b, row]
            line[:] = 0.0
            for v in range(n_views):
                values = filtered[b, v]
                for col in range(width):
                    x = col - (width - 1) / 2
                    along = x * cos[v] + y * sin[v]
                    weight = scale
                    if fan:
                        distance = source_distance - (x * sin[v] - y * cos[v])
                        along = along * (source_distance + detector_distance) / distance
                        weight = scale * (source_distance / distance) ** 2
                    position = along / det_spacing + centre
                    lower = math.floor(position)
                    frac = position - lower
                    k = int(lower)
                    if 0 <= k < det_count:
                        line[col] += weight * (1.0 - frac) * values[k]
                    if 0 <= k + 1 < det_count:
                        line[col] += weight * frac * values[k + 1]
