"""The pure compute step of ``sparsect batch``: one work unit's slices simulated, reconstructed and scored by the
run layer (:func:`sparsect.app.run.reconstruct`, stacked ``batch_size`` slices at a time), one record per slice.

Runs in the worker (local process, pool process or Ray task) and touches no file; units come from
:mod:`sparsect.app.batch.plan`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from sparsect import data
from sparsect.app import run, scans
from sparsect.app.batch.plan import BatchSettings, Unit
from sparsect.app.settings import MethodSettings, ScanSettings, parse_device
from sparsect.reconstruct import registry


def make_payload(unit: Unit, series: Any, settings: BatchSettings, device: str, batch_size: int) -> dict[str, Any]:
    """What a worker needs for one unit: the slices' HU images and the settings (plain, picklable)."""
    return {
        "unit_id": unit.id, "method": unit.method, "views": unit.views, "slices": list(unit.slices),
        "hu": np.ascontiguousarray(series.hu[list(unit.slices)], dtype=np.float32),
        "spacing": (float(series.spacing[0]), float(series.spacing[1])),
        "preset": settings.preset, "variant": list(settings.variant), "iterations": settings.iterations,
        "photons": settings.photons, "seed": settings.seed, "device": device, "batch_size": batch_size,
        "simulation": settings.simulation, "size": settings.size, "window": settings.window,
    }


def auto_batch_size(method: str, shape: tuple[int, int], device: str) -> int:
    """Slices reconstructed at once when ``--batch-size`` is 0 (a CUDA out-of-memory error halves it).

    Classical methods on CUDA: from free GPU memory (iterates, duals, gradients and projector buffers,
    ~96 float32 images per slice), so small images fill the card. Networks on CUDA: enough slices for
    about 2^18 pixels per network evaluation (16 at 128², 4 at 256², 1 at 512²), since one small image
    leaves most of a GPU idle. On CPU the cores are already busy with one slice: classical methods take
    4 (one matrix product for all), networks 1 (measured: 4 networks side by side gain only 10 % a slice on
    2 cores).
    """
    pixels = shape[0] * shape[1]
    neural = method in registry.NETWORK_METHODS
    if not device.startswith("cuda"):
        return 1 if neural else 4
    if neural:
        return int(max(1, min(16, (1 << 18) // pixels)))
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(max(1, min(64, (free // 2) // (pixels * 4 * 96))))


def compute(payload: dict[str, Any]) -> dict[str, Any]:
    """Reconstruct and score the unit's slices. Never raises for ordinary errors: returns ``ok: False``.

    The warnings raised on the way (a network fit rolled back, an ensemble member left out) come back as
    ``warnings``, a list of messages, so that the batch log names the unit they belong to whichever process
    or Ray task ran it."""
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are: only the recording changes
        try:
            result = _compute(payload)
        except Exception as error:  # one bad unit must not stop the batch
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    result["warnings"] = list(dict.fromkeys(str(w.message) for w in caught))
    return result


def _compute(payload: dict[str, Any]) -> dict[str, Any]:
    device = parse_device(payload["device"])
    settings = MethodSettings(iterations=payload["iterations"], preset=payload["preset"], seed=payload["seed"],
                              device=device, variant=tuple(payload["variant"]))
    hu = np.array(payload["hu"], dtype=np.float32)  # writable copy (Ray hands out read-only arrays)
    spacing, size = tuple(payload["spacing"]), payload.get("size")  # size: the working grid (None: the slice's)
    slice_scans = [scans.simulate(data.CTSlice(hu=image, spacing=spacing), ScanSettings(
        views=payload["views"], photons=payload["photons"], seed=payload["seed"] + int(index),
        simulation=payload["simulation"], size=size), {"slice": int(index), "window": payload.get("window")})
        for index, image in zip(payload["slices"], hu, strict=True)]
    shape = hu.shape[1:] if size is None else (size, size)
    batch = payload["batch_size"] or auto_batch_size(payload["method"], shape, device)
    outcomes: list[run.Outcome] = []
    while len(outcomes) < len(slice_scans):
        b = min(batch, len(slice_scans) - len(outcomes))
        try:
            outcomes += run.reconstruct(payload["method"], slice_scans[len(outcomes):len(outcomes) + b], settings)
        except torch.cuda.OutOfMemoryError:
            if b == 1:
                raise
            batch = max(1, b // 2)
            torch.cuda.empty_cache()
    uncertainty = None
    if outcomes[0].uncertainty_hu is not None:
        uncertainty = np.stack([o.uncertainty_hu for o in outcomes]).astype(np.float32)
    rows = [outcome.record() for outcome in outcomes]
    result = {"ok": True, "images": np.stack([o.image_hu for o in outcomes]).astype(np.float32),
              "consistency": np.stack([o.consistency_hu for o in outcomes]).astype(np.float32),
              "uncertainty": uncertainty, "rows": rows, "batch_size": batch}
    if size is not None:  # the slices on the working grid, for the contact sheet
        result["references"] = np.stack([s.reference_hu for s in slice_scans]).astype(np.float32)
    return result
