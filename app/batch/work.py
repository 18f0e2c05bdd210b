"""The pure compute step of ``sparsect batch``: one work unit's slices simulated, reconstructed and scored.

Runs in the worker (local process, pool process or Ray task) and touches no file; units come from
:mod:`sparsect.app.batch.plan`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import torch

from sparsect import data
from sparsect.app import pipeline
from sparsect.app.batch.plan import BatchSettings, Unit
from sparsect.app.settings import MethodSettings, ScanSettings, parse_device
from sparsect.reconstruct import registry
from sparsect.reconstruct.consistency import data_consistency_hu


def make_payload(unit: Unit, series: Any, settings: BatchSettings, device: str, batch_size: int) -> dict[str, Any]:
    """What a worker needs for one unit: the slices' HU images and the settings (plain, picklable)."""
    return {
        "unit_id": unit.id, "method": unit.method, "views": unit.views, "slices": list(unit.slices),
        "hu": np.ascontiguousarray(series.hu[list(unit.slices)], dtype=np.float32),
        "spacing": (float(series.spacing[0]), float(series.spacing[1])),
        "preset": settings.preset, "variant": list(settings.variant), "iterations": settings.iterations,
        "photons": settings.photons, "seed": settings.seed, "device": device, "batch_size": batch_size,
        "simulation": settings.simulation,
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


def _run(method: str, sims: list[Any], settings: MethodSettings) -> Any:
    """Reconstruct the slices of ``sims`` (one geometry) in one call: stacked as (B, 1, n_views, det)."""
    if len(sims) == 1:
        return pipeline.run_method(method, sims[0], settings)
    stacked = dataclasses.replace(sims[0], sinogram=torch.stack([s.sinogram for s in sims])[:, None])
    return pipeline.run_method(method, stacked, settings)


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
    spacing = tuple(payload["spacing"])
    sims = []
    for index, image in zip(payload["slices"], hu, strict=True):
        scan = ScanSettings(views=payload["views"], photons=payload["photons"], seed=payload["seed"] + int(index),
                            simulation=payload["simulation"])
        sims.append(pipeline.simulate(data.CTSlice(hu=image, spacing=spacing), scan))
    batch = payload["batch_size"] or auto_batch_size(payload["method"], hu.shape[1:], device)
    images, consistency = np.empty_like(hu), np.empty_like(hu)
    uncertainty = None
    seconds: list[float] = []
    fit_notes: list[str] = []
    used_device = device
    i = 0
    while i < len(sims):
        b = min(batch, len(sims) - i)
        try:
            recon = _run(payload["method"], sims[i:i + b], settings)
        except torch.cuda.OutOfMemoryError:
            if b == 1:
                raise
            batch = max(1, b // 2)
            torch.cuda.empty_cache()
            continue
        images[i:i + b] = np.asarray(recon.image_hu, dtype=np.float32).reshape(b, *hu.shape[1:])
        consistency[i:i + b] = data_consistency_hu(
            recon.mu, torch.stack([s.sinogram for s in sims[i:i + b]]), sims[i].geometry,
            sims[i].pixel_size_mm).reshape(b, *hu.shape[1:])
        if recon.uncertainty_hu is not None:
            uncertainty = np.zeros_like(hu) if uncertainty is None else uncertainty
            uncertainty[i:i + b] = np.asarray(recon.uncertainty_hu).reshape(b, *hu.shape[1:])
        seconds += [float(recon.seconds) / b] * b
        fit_notes += ["; ".join(pipeline.fit_notes(recon, j)) for j in range(b)]
        used_device = recon.device
        i += b
    rows = []
    for index, image, simulation, secs, note in zip(payload["slices"], images, sims, seconds, fit_notes,
                                                    strict=True):
        rows.append({"slice": int(index), **pipeline.rounded_scores(pipeline.score(image, simulation)),
                     **simulation.record(), "seconds": round(secs, 3), "device": str(used_device),
                     "fit_note": note})
    return {"ok": True, "images": images, "consistency": consistency, "uncertainty": uncertainty, "rows": rows,
            "batch_size": batch}
