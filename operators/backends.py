"""Projection backends: each maps (N, H, W) images to (N, n_angles, det_count) sinograms and back.

A backend only computes; autograd, shapes and dtype checks live in :mod:`operators.radon`.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from sparsect.operators.geometry import FanBeam, Geometry
from sparsect.operators.system_matrix import MATRICES

BACKENDS = ("torch", "astra")


class TorchBackend:
    """Pure PyTorch: a cached CSR system matrix on the tensor's device, multiplied with ``torch.sparse``.

    Half-precision inputs are computed in float32 and cast back.
    """

    name = "torch"

    def __init__(self, geometry: Geometry, model: str) -> None:
        self.geometry, self.model = geometry, model

    def _matrices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return MATRICES.projection_pair(self.geometry, self.model, x.dtype, x.device)

    @staticmethod
    def _work(x: torch.Tensor) -> torch.Tensor:
        return x if x.dtype in (torch.float32, torch.float64) else x.float()

    def project(self, images: torch.Tensor) -> torch.Tensor:
        work = self._work(images)
        forward, _ = self._matrices(work)
        columns = work.reshape(work.shape[0], -1).t().contiguous()
        sinograms = (forward @ columns).t()
        return sinograms.reshape(images.shape[0], *self.geometry.sinogram_shape).to(images.dtype)

    def backproject(self, sinograms: torch.Tensor) -> torch.Tensor:
        work = self._work(sinograms)
        _, transpose = self._matrices(work)
        columns = work.reshape(work.shape[0], -1).t().contiguous()
        images = (transpose @ columns).t()
        return images.reshape(sinograms.shape[0], *self.geometry.image_size).to(sinograms.dtype)


class AstraBackend:
    """astra-toolbox's CPU projectors (``linear``/``line`` for parallel, ``line_fanflat`` for fan beams).

    ASTRA computes in float32 on host memory; tensors on other devices are copied there and back.
    """

    name = "astra"

    def __init__(self, geometry: Geometry, model: str) -> None:
        import astra

        self._astra = astra
        self.geometry = geometry
        height, width = geometry.image_size
        volume = astra.create_vol_geom(height, width)
        angles = geometry.angles.numpy()
        if isinstance(geometry, FanBeam):
            if model != "line":
                raise ValueError("ASTRA's CPU fan-beam projector supports only the 'line' pixel model")
            projection = astra.create_proj_geom("fanflat", geometry.det_spacing, geometry.det_count, angles,
                                                geometry.source_distance, geometry.detector_distance)
            kind = "line_fanflat"
        else:
            projection = astra.create_proj_geom("parallel", geometry.det_spacing, geometry.det_count, angles)
            kind = model
        self._projector = astra.create_projector(kind, projection, volume)
        self._operator = astra.OpTomo(self._projector)

    def __del__(self) -> None:
        try:
            self._astra.projector.delete(self._projector)
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn astra down already
            pass

    def _map(self, batch: torch.Tensor, apply, out_shape: tuple[int, int]) -> torch.Tensor:
        host = batch.detach().to("cpu", torch.float32).numpy()
        result = np.stack([apply(np.ascontiguousarray(item)).reshape(out_shape) for item in host])
        return torch.from_numpy(result).to(device=batch.device, dtype=batch.dtype)

    def project(self, images: torch.Tensor) -> torch.Tensor:
        return self._map(images, self._operator.FP, self.geometry.sinogram_shape)

    def backproject(self, sinograms: torch.Tensor) -> torch.Tensor:
        return self._map(sinograms, self._operator.BP, self.geometry.image_size)


def astra_available() -> bool:
    """Whether astra-toolbox can be imported."""
    return importlib.util.find_spec("astra") is not None


def make_backend(name: str, geometry: Geometry, model: str) -> TorchBackend | AstraBackend:
    """Instantiate backend ``name`` ("auto", "torch" or "astra") for ``geometry``.

    "auto" is the PyTorch backend: on the development machine it is faster than ASTRA's CPU projector
    (docs/BENCHMARKS.md), runs on any torch device and needs no host copies.
    """
    if name in ("auto", "torch"):
        return TorchBackend(geometry, model)
    if name == "astra":
        if not astra_available():
            raise ImportError("backend 'astra' needs astra-toolbox: pip install 'sparsect[astra]'")
        return AstraBackend(geometry, model)
    raise ValueError(f"unknown backend {name!r}; choose 'auto' or one of {BACKENDS}")
