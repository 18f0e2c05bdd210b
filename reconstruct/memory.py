"""Peak-memory estimate of one reconstruction job, before any of it runs.

The estimate adds what the job holds at once: the source image and the honest simulation's finer grid
(:mod:`sparsect.data.simulate`), the rays and sinograms of the simulation and of the working geometry, the
working images of the methods, the projector's working memory (matrix-free chunks are bounded by
``chunk_bytes``; the cached sparse matrix by :func:`sparsect.operators.system_matrix.matrix_bytes` of an upper
bound on its entries, and never above the budget it is built under) and the networks' activations (one value
per pixel per activation, kept for the backward pass). It is meant to be within a small factor of the real
peak, so that settings far beyond the machine are refused at once instead of running until the allocator
fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from sparsect import operators
from sparsect.data.simulate import SUB_RAYS, simulation_grid
from sparsect.operators.backends import MATRIX_MIN_CALLS
from sparsect.operators.radon import DEFAULT_CHUNK_BYTES
from sparsect.operators.system_matrix import DEFAULT_MATRIX_BYTES, matrix_bytes
from sparsect.reconstruct.models import LRNNConfig, SIRENConfig, WIREConfig, get_preset
from sparsect.reconstruct.registry import CLASSICAL_METHODS, iterations_for

FLOAT32, FLOAT64 = 4, 8
#: Bytes one ray costs while its strip walk is built: points and directions (4 float64), the walk's
#: temporaries (about 8 float64) and the kept walk (3 float64 and a bool).
RAY_BYTES = 12 * FLOAT64 + 3 * FLOAT64 + 1
#: Working-grid images an iterative method holds at once (estimate, update, weights, gradients, ...).
METHOD_IMAGES = 8
#: Sinograms an iterative method holds at once (data, residual, weights, projections, ...).
METHOD_SINOGRAMS = 6
#: Copies of each network activation kept during a training step (the value, its input, its gradient).
ACTIVATION_COPIES = 3


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each part of a job's peak; :attr:`total` is what the job needs."""

    simulation: int
    methods: int
    projector: int
    networks: int

    @property
    def total(self) -> int:
        return self.simulation + self.methods + self.projector + self.networks


def _geometry(beam: str, views: int, side: int, det_count: int | None) -> operators.Geometry:
    if beam == "fan":
        return operators.FanBeam.sparse(views, image_size=(side, side), det_count=det_count)
    return operators.ParallelBeam.sparse(views, image_size=(side, side), det_count=det_count)


def _simulation_bytes(source_side: int, working_side: int, n_rays: int, honest: bool) -> int:
    """The source in float64 HU and mu, the projected grid and its rays, and the working sinograms."""
    source = 2 * FLOAT64 * source_side**2
    if not honest:
        return source + n_rays * (RAY_BYTES + 3 * FLOAT64)
    grid = simulation_grid((source_side, source_side), (working_side, working_side))[0]
    fine_rays = n_rays * SUB_RAYS
    return source + (FLOAT64 + FLOAT32) * grid**2 + fine_rays * (RAY_BYTES + FLOAT32 + FLOAT64) + 3 * FLOAT64 * n_rays


def _matrix_bytes(geometry: operators.Geometry, model: str) -> int:
    """Bytes of the cached (A, A^T) if it can be built: an upper bound on its entries (a ray touches at most
    two pixels per strip under "linear", at most H + W pixels under "line"), capped by the build budget."""
    height, width = geometry.image_size
    n_rays = geometry.n_angles * geometry.det_count
    per_ray = 2 * max(height, width) if model == "linear" else height + width
    size = matrix_bytes(n_rays * per_ray, n_rays, height * width, torch.float32)
    return min(size, DEFAULT_MATRIX_BYTES)


def resample_bytes(source_shape: tuple[int, int], side: int) -> int:
    """Peak bytes of resampling an (H, W) source slice to ``side`` x ``side`` (:func:`sparsect.data.resample`):
    the float64 source and its anti-aliasing copy, the float64 result and its float32 copy."""
    height, width = source_shape
    return 2 * FLOAT64 * height * width + (FLOAT64 + FLOAT32) * side**2


def activations_per_pixel(method: str, preset: str) -> int:
    """Values one pixel's coordinate produces in one forward pass of ``method``'s ``preset`` network."""
    config = get_preset(method, preset).config
    if isinstance(config, LRNNConfig):  # projection z, components g, 1 + gamma g (r*d each); product, norm (r)
        return config.depth * (3 * config.rank * config.proj_dim + 2 * config.rank)
    if isinstance(config, WIREConfig):  # complex z, w0 z, s0 z, |s0 z|^2, exp: two floats each
        return (config.hidden_layers + 1) * 2 * 5 * config.hidden_features
    if isinstance(config, SIRENConfig):  # linear output, w0 x, sin
        return (config.hidden_layers + 1) * 3 * config.hidden_features
    raise TypeError(f"no activation count for {type(config).__name__}")


def estimate(source_side: int, working_side: int, views: int, methods: Iterable[str], preset: str = "preview",
             beam: str = "parallel", simulation: str = "honest", det_count: int | None = None,
             slices: int = 1, iterations: int | None = None, ensemble: int = 1) -> MemoryEstimate:
    """Peak bytes of simulating a ``views``-view scan of a square ``source_side`` slice onto a
    ``working_side`` grid and reconstructing ``slices`` slices of it with each of ``methods`` in turn.

    Parameters
    ----------
    source_side, working_side : sides of the (square) source image and working grid, pixels.
    views : number of views; ``det_count`` detector bins (None: the geometry's default).
    methods : registry method names; ``preset`` the networks' preset.
    beam : "parallel" or "fan"; ``simulation`` "honest" or "same-grid".
    slices : slices reconstructed in one call (networks fitted together).
    iterations : the methods' budget (None: each one's default); it decides whether the matrix is built.
    ensemble : networks fitted per slice (the ``ensemble`` variant's size; 1 otherwise).
    """
    methods = tuple(methods)
    geometry = _geometry(beam, views, working_side, det_count)
    n_rays, pixels = geometry.n_angles * geometry.det_count, working_side**2
    model = "line" if beam == "fan" else "linear"
    sim = _simulation_bytes(source_side, working_side, n_rays, simulation == "honest")
    method_bytes = slices * FLOAT32 * (METHOD_IMAGES * pixels + METHOD_SINOGRAMS * n_rays)
    # a forward and an adjoint per iteration (as the methods announce them) decide whether the matrix is built
    iterative = any(2 * (iterations_for(m, iterations, preset) or 0) >= MATRIX_MIN_CALLS for m in methods)
    # matrix-free working memory: chunks of rays (GPU) or per-thread images (CPU), within chunk_bytes
    chunks = min(DEFAULT_CHUNK_BYTES, (os.cpu_count() or 1) * FLOAT32 * slices * max(pixels, n_rays))
    projector = n_rays * RAY_BYTES + chunks + (_matrix_bytes(geometry, model) if iterative else 0)
    networks = max((activations_per_pixel(m, preset) for m in methods if m not in CLASSICAL_METHODS), default=0)
    return MemoryEstimate(simulation=sim, methods=method_bytes, projector=projector,
                          networks=slices * ensemble * ACTIVATION_COPIES * FLOAT32 * networks * pixels)


__all__ = ["MemoryEstimate", "activations_per_pixel", "estimate", "resample_bytes"]
