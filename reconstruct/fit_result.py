"""What a network fit reports: :class:`FitProgress` to its callback while it runs and :class:`FitResult` at the
end (a :class:`reconstruct.result.Reconstruction` plus the training records)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sparsect.reconstruct.result import Reconstruction

#: How progress reports name the steps of each :class:`FitProgress` phase.
PHASE_STEPS = {"warm_start": "warm start", "fit": "iteration", "tv_blend": "TV for the blend"}


@dataclass
class FitProgress:
    """What a :func:`reconstruct.fit.fit` callback receives.

    iteration : 1-based number of finished iterations; iterations : the budget.
    loss : sinogram MSE of this iteration (line-integral units squared; the mean over slices when
        several networks are fitted at once).
    elapsed : seconds since the fit started; lr : learning rate used for this iteration.
    image : numpy float32 attenuation per pixel unit on preview iterations, else None; (H, W) for one
        network, (B, H, W) for several.
    phase : "warm_start" while the network is pre-fitted to a warm-start image (iteration / iterations
        then count the warm-start steps and loss is the image-domain MSE), "fit" in the main loop,
        "tv_blend" while the "tv_blend" variant runs TV after the fit (TV's iterations and objective).
    """

    iteration: int
    iterations: int
    loss: float
    elapsed: float
    lr: float
    image: np.ndarray | None = None
    phase: str = "fit"


@dataclass
class FitResult(Reconstruction):
    """Outcome of :func:`reconstruct.fit.fit`: a :class:`reconstruct.result.Reconstruction` plus training records.

    image_hu : numpy float32 (H, W), Hounsfield units (``mu_to_hu(mu, mu_water)``); (B, H, W) for several.
    mu : float32 tensor (H, W) on the fitting device, attenuation in 1/mm (``image / pixel_size_mm``);
        (B, 1, H, W) for several networks.
    image : float32 CPU tensor (H, W) (or (B, H, W)), attenuation per pixel unit (what the projector sees).
    curve : sinogram MSE per iteration (line-integral units squared, mean over the slices still being fitted; NaN
        where an iteration diverged).
    n_parameters : parameters of one network.
    settings : the settings used (the :class:`reconstruct.fit_config.FitConfig` fields, plus batch and recoveries:
        the roll-backs of all networks together).
    seconds_per_iteration : main-loop wall time / iterations run.
    peak_memory_bytes : CUDA ``max_memory_allocated``; on CPU the growth of the process's peak
        resident set during the fit (0 if the peak was reached earlier); None if unavailable.
    events : divergence recoveries, early/requested stops, fallbacks, in order.
    stop_reason : "completed", "early_stop", "discrepancy", "stopped" or "diverged" (every network ran out of
        roll-backs).
    timings : extra wall times in seconds ("loop_seconds", "warm_start_seconds", and
        "warm_start_image_seconds" for a TV warm start).
    warm_start_iterations (inherited): warm-start steps run before the main loop (not in ``iterations``).
    model : the trained network (on the fitting device); a :class:`reconstruct.models.stacked.StackedModels` for
        several, whose
        original networks also hold their trained parameters.
    """

    image: torch.Tensor | None = None
    seconds_per_iteration: float = float("nan")
    peak_memory_bytes: int | None = None
    events: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def final_loss(self) -> float:
        """Last finite loss of the curve (NaN if none)."""
        finite = [v for v in self.curve if math.isfinite(v)]
        return finite[-1] if finite else float("nan")


__all__ = ["PHASE_STEPS", "FitProgress", "FitResult"]
