"""A network fit on two grids: most steps on a coarse grid, the last ones on the scan's own.

The network is a continuous function of the image coordinates, so it can be fitted through a projector on a grid
of larger pixels over the same field of view (:meth:`sparsect.operators.Geometry.on_grid`: the same sinogram, the
same rays) and then evaluated, and fitted further, on the scan's own grid. A step on a 128² grid costs a sixteenth
of one on 512². :func:`fit_on_grids` runs :func:`reconstruct.fit.fit` twice with one network (its warm start on the
coarse grid) and returns one :class:`reconstruct.fit_result.FitResult` for both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sparsect.operators import Radon
from sparsect.reconstruct.fit_config import FitConfig
from sparsect.reconstruct.fit_result import FitProgress, FitResult
from sparsect.reconstruct.models.stacked import StackedModels
from sparsect.reconstruct.result import StopLike
from sparsect.reconstruct.schedule import lr_at


def coarse_size(image_size: tuple[int, int], side: int) -> tuple[int, int] | None:
    """The coarse grid for an ``image_size`` (H, W) fit with ``coarse_grid=side``: the largest side ``side``, the
    aspect ratio kept exactly; None when the scan's grid is no larger or no such grid exists."""
    height, width = image_size
    if max(height, width) <= side:
        return None
    if height == width:
        return (side, side)
    for divisor in range(-(-max(height, width) // side), max(height, width) + 1):  # the smallest reduction
        if height % divisor == 0 and width % divisor == 0:
            return (height // divisor, width // divisor)
    return None


def _on_coarse(image: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
    """An (H, W) or (B, H, W) image in attenuation per fine pixel as the area average on ``size``, per coarse pixel
    (``scale`` = coarse pixels per fine pixel < 1)."""
    batched = image.reshape(-1, 1, *image.shape[-2:]).float()
    coarse = F.interpolate(batched, size=size, mode="area") / scale
    return coarse.reshape(*image.shape[:-2], *size)


def _progress_on_fine_grid(callback: Callable[[FitProgress], None] | None, done: int, total: int,
                           size: tuple[int, int], scale: float) -> Callable[[FitProgress], None] | None:
    """``callback`` seeing one budget of ``total`` main-loop steps (``done`` before this grid's) and previews on the
    scan's grid ``size``, in attenuation per fine pixel."""
    if callback is None:
        return None

    def report(progress: FitProgress) -> None:
        image = progress.image
        if image is not None and tuple(image.shape[-2:]) != size:
            grid = torch.as_tensor(image).reshape(-1, 1, *image.shape[-2:])
            image = (F.interpolate(grid, size=size, mode="bilinear", align_corners=False) * scale).reshape(
                *image.shape[:-2], *size).numpy()
        steps = {"iteration": done + progress.iteration, "iterations": total} if progress.phase == "fit" else {}
        callback(dataclasses.replace(progress, image=image, **steps))

    return report


def fit_on_grids(model: nn.Module, radon: Radon, sinogram: torch.Tensor, config: FitConfig, size: tuple[int, int],
                 init_image: torch.Tensor | None, callback: Callable[[FitProgress], None] | None,
                 stop: StopLike) -> FitResult:
    """:func:`reconstruct.fit.fit` of ``model`` on the coarse grid ``size`` (its warm start and the first
    ``iterations - fine_iterations`` steps), then the last ``fine_iterations`` on ``radon``'s own grid, continuing
    the learning-rate schedule with a fresh optimiser; a stop request skips the fine steps (the network is still
    evaluated on the scan's grid). Arguments as :func:`reconstruct.fit.fit`'s.

    Returns
    -------
    One :class:`FitResult` on the scan's grid: ``curve`` both grids' losses in order (the same sinogram's MSE),
    ``iterations`` both grids' steps, ``settings["grids"]`` the coarse grid and the steps on each.
    """
    from sparsect.reconstruct.fit import fit  # fit calls this module for a two-grid config

    geometry = radon.geometry
    scale = size[0] / geometry.image_size[0]
    fine_steps = min(config.fine_iterations, config.iterations)
    coarse_steps = config.iterations - fine_steps
    batch = len(model) if isinstance(model, StackedModels) else 1
    scales = config.scales(batch)
    coarse_radon = Radon(geometry.on_grid(size), model=radon.model)
    coarse_config = dataclasses.replace(
        config, coarse_grid=None, iterations=coarse_steps, output_scale=tuple(s / scale for s in scales),
        pixel_size_mm=config.pixel_size_mm / scale)
    coarse_init = None if init_image is None else _on_coarse(init_image, size, scale)
    coarse = fit(model, coarse_radon, sinogram, coarse_config, init_image=coarse_init, stop=stop,
                 callback=_progress_on_fine_grid(callback, 0, config.iterations, geometry.image_size, scale))
    stopped = coarse.stop_reason == "stopped"
    start_lr = lr_at(coarse_steps, config.iterations, config.lr, config.warmup_iterations, config.final_lr_factor,
                     config.schedule)
    fine_config = dataclasses.replace(
        config, coarse_grid=None, iterations=0 if stopped else fine_steps, warm_start=None, lr=start_lr,
        warmup=min(5, fine_steps // 4), final_lr_factor=min(1.0, config.lr * config.final_lr_factor / start_lr),
        output_scale=tuple(scales))
    fine = fit(coarse.model, radon, sinogram, fine_config, stop=stop,
               callback=_progress_on_fine_grid(callback, coarse.iterations, config.iterations, geometry.image_size,
                                               scale))
    return _joined(coarse, fine, config, batch, size)


def _joined(coarse: FitResult, fine: FitResult, config: FitConfig, batch: int, size: tuple[int, int]) -> FitResult:
    """``fine`` (the scan's grid) carrying both grids' records."""
    steps = coarse.iterations + fine.iterations
    loop = coarse.timings.get("loop_seconds", 0.0) + fine.timings.get("loop_seconds", 0.0)
    fine.settings = {**coarse.settings, "iterations": config.iterations, "lr": config.lr,
                     "warmup": config.warmup_iterations, "final_lr_factor": config.final_lr_factor,
                     "output_scale": fine.settings["output_scale"], "pixel_size_mm": config.pixel_size_mm,
                     "coarse_grid": config.coarse_grid, "fine_iterations": config.fine_iterations,
                     "recoveries": coarse.settings.get("recoveries", 0) + fine.settings.get("recoveries", 0),
                     "largest_loss_ratio": max(coarse.settings.get("largest_loss_ratio", 1.0),
                                               fine.settings.get("largest_loss_ratio", 1.0)),
                     "grids": {"coarse": list(size), "coarse_iterations": coarse.iterations,
                               "fine_iterations": fine.iterations}}
    fine.curve = coarse.curve + fine.curve
    fine.iterations = steps
    fine.seconds = coarse.seconds + fine.seconds
    fine.seconds_per_iteration = loop / steps if steps else float("nan")
    fine.timings = {**coarse.timings, "loop_seconds": loop, "coarse_grid_seconds": coarse.seconds}
    fine.events = coarse.events + fine.events
    fine.warnings = coarse.warnings + fine.warnings
    fine.warm_start_iterations = coarse.warm_start_iterations
    fine.diverged = sorted(set(coarse.diverged) | set(fine.diverged))
    if coarse.stop_reason in ("stopped", "diverged") or not fine.iterations:
        fine.stop_reason = coarse.stop_reason
    if fine.peak_memory_bytes is not None and coarse.peak_memory_bytes is not None:
        fine.peak_memory_bytes = max(fine.peak_memory_bytes, coarse.peak_memory_bytes)
    return fine


__all__ = ["coarse_size", "fit_on_grids"]
