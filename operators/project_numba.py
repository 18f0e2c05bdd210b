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
    limits both); yields that thread count. Torch's own count is restored afterwards: numba's OpenMP layer
    shares torch's libgomp and raises it to ``NUMBA_NUM_THREADS`` when it starts, which made a one-thread
    network fit on a busy machine 30x slower (docs/BENCHMARKS.md, "Thread counts")."""
    with _LOCK:
        torch_threads = torch.get_num_threads()
        threads = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(threads)
        try:
            yield threads
        finally:
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)


@numba.njit(cache=True, inline="always")
def _strips_between(offset: float, slope: float, n_strips: int, low: float, high: float) -> tuple[int, int]:
    """First and one-past-last strip whose centre may lie in (low, high), with a strip of margin."""
    if slope == 0.0:
        if low < offset < high:
            return 0, n_strips
        return 0, 0
    a = (low - offset) / slope
    b = (high - offset) / slope
    first = max(min(a, b), 0.0)
    last = min(max(a, b), float(n_strips))
    if last < first:
        return 0, 0
    return int(math.floor(first)), min(n_strips, int(math.ceil(last)) + 1)


@numba.njit(cache=True, inline="always")
def _strip_range(offset: float, slope: float, n_strips: int, n_across: int) -> tuple[int, int]:
    """Strips where the ray can have a nonzero weight: centre in (-1.5, n_across + 1) for either model."""
    return _strips_between(offset, slope, n_strips, -1.5, n_across + 1.0)


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
    """Column indices and weights of every ray into ``col``/``val`` at ``crow[r]``, sorted within a row.

    Steep rays come out sorted when walked row by row. Shallow rays are walked in the direction that
    makes their row index non-decreasing, then insertion-sorted: only entries of one image row are out
    of order, so the sort costs about one pass over the row.
    """
    for r in numba.prange(offset.shape[0]):
        n_strips, n_across, strip_stride, across_stride = _layout(steep[r], height, width)
        first, last = _strip_range(offset[r], slope[r], n_strips, n_across)
        start = crow[r]
        k = start
        backwards = not steep[r] and slope[r] < 0.0
        for i in range(last - first):
            s = last - 1 - i if backwards else first + i
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
        if not steep[r]:
            for i in range(start + 1, k):
                key, weight = col[i], val[i]
                j = i - 1
                while j >= start and col[j] > key:
                    col[j + 1] = col[j]
                    val[j + 1] = val[j]
                    j -= 1
                col[j + 1] = key
                val[j + 1] = weight


@numba.njit(parallel=True, cache=True)
def fill_columns(steep, offset, slope, path, height, width, linear, rows_per_block, first_block, last_block, counts,
                 t_crow, t_col, t_val):  # pragma: no cover - compiled
    """The transpose A^T directly: for every pixel the rays through it (in ray order) and their weights.

    Image rows are split into blocks, one block per task; a task walks every ray only over the strips
    that reach its rows, recomputing the weights with :func:`_pixel_pair`, and writes only its own
    pixels' entries, so the writes stay local. Only blocks ``first_block`` to ``last_block - 1`` are done (the
    caller walks the ``ceil(H / rows_per_block)`` blocks in chunks). With ``counts`` of length H * W (zeroed) it
    only counts every pixel's entries; otherwise it fills ``t_col``/``t_val`` from the offsets ``t_crow``.
    """
    count_only = counts.shape[0] > 0
    for index in numba.prange(last_block - first_block):
        block = first_block + index
        top = block * rows_per_block
        bottom = min(height, top + rows_per_block)
        fill = t_crow[top * width:bottom * width].copy()
        for r in range(offset.shape[0]):
            n_strips, n_across, strip_stride, across_stride = _layout(steep[r], height, width)
            if steep[r]:
                first, last = _strip_range(offset[r], slope[r], n_strips, n_across)
                first, last = max(first, top), min(last, bottom)
                low, high = 0, n_across
            else:
                first, last = _strips_between(offset[r], slope[r], n_strips, top - 1.5, bottom + 1.0)
                low, high = top, bottom
            for s in range(first, last):
                lower, share = _pixel_pair(offset[r] + slope[r] * s, slope[r], linear)
                for across, weight in ((lower, share), (lower + 1, 1.0 - share)):
                    if low <= across < high and weight > 0.0:
                        pixel = s * strip_stride + across * across_stride
                        if count_only:
                            counts[pixel] += 1
                        else:
                            k = fill[pixel - top * width]
                            t_col[k] = r
                            t_val[k] = weight * path[r]
                            fill[pixel - top * width] = k + 1


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
