"""The result object shared by every reconstruction method (classical solvers and neural fields)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sparsect.operators.progress import StopLike, stop_requested  # noqa: F401 - importable from here too


@dataclass
class IterationProgress:
    """What an iterative classical method reports after an iteration (epoch for OS-SART).

    iteration : iterations done so far (1-based); iterations : the budget.
    loss : the method's convergence value just recorded in ``Reconstruction.curve``.
    image : every ``preview_every`` iterations and at the last one, the current iterate of the first
        slice as a float32 (H, W) numpy array of attenuation per pixel (``mu * pixel_size_mm``), else None.
    """

    iteration: int
    iterations: int
    loss: float
    image: np.ndarray | None = None


ProgressCallback = Callable[[IterationProgress], None] | None


def report_progress(callback: ProgressCallback, iteration: int, iterations: int, loss: float, x: torch.Tensor,
                    preview_every: int = 10) -> None:
    """Call ``callback`` (if any) for iteration ``iteration`` of ``iterations``; ``x`` is the (B, 1, H, W)
    iterate, copied to the CPU only on preview iterations."""
    if callback is None:
        return
    preview = iteration % preview_every == 0 or iteration == iterations
    image = x[0, 0].detach().float().cpu().numpy() if preview else None
    callback(IterationProgress(iteration, iterations, float(loss), image))


@dataclass
class Reconstruction:
    """Output of one reconstruction run.

    Attributes
    ----------
    image_hu : numpy float32, (H, W) for one sinogram or (B, H, W) for a batch, in HU.
    mu : torch tensor on the computing device, attenuation in 1/mm; (H, W) or (B, 1, H, W), the
        layout of the input sinogram.
    method : short method name ("fbp", "sirt", "cgls", "tv", "os_sart", ...).
    iterations : iterations actually run (0 for direct methods).
    seconds : wall time of the reconstruction itself, in seconds.
    curve : per-iteration convergence values (the method documents which: data residual or objective).
    settings : the settings used (including defaults that were resolved from the data); also readable as
        ``parameters``, deprecated (that word means a count of trainable parameters elsewhere).
    device : torch device string the computation ran on.
    n_parameters : number of trainable parameters (0 for classical methods).
    stop_reason : why the run ended: "completed" (ran its budget or met its own convergence test) or
        "stopped" (a stop request interrupted it; the result is the iterate reached so far and
        ``iterations`` counts the iterations actually run). Neural fits add "early_stop" and "diverged"
        (see :class:`reconstruct.fit.FitResult`).
    warm_start_iterations : steps spent before the main iterations (a network's warm start), not counted
        in ``iterations``; 0 for the classical methods.
    uncertainty_hu : per-pixel standard deviation in HU across the members of a network ensemble (the
        "ensemble" fit variant), the layout of ``image_hu``; None for a single fit and the classical methods.
    diverged : the images (indices along the batch; [0] for one sinogram) that come from a network fit that ran
        out of divergence roll-backs: its last good state, not a converged fit. Empty when every fit went well,
        and always for the classical methods.
    warnings : what the run also raised as a ``RuntimeWarning`` (a roll-back, an ensemble member left out), in
        order, so a caller can report it with the method it belongs to; empty for the classical methods.
    """

    image_hu: np.ndarray
    mu: torch.Tensor
    method: str
    iterations: int = 0
    seconds: float = 0.0
    curve: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    n_parameters: int = 0
    stop_reason: str = "completed"
    warm_start_iterations: int = 0
    uncertainty_hu: np.ndarray | None = None
    diverged: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def parameters(self) -> dict[str, Any]:
        """Deprecated name of :attr:`settings` (the same dict), with a ``DeprecationWarning``."""
        warnings.warn("Reconstruction.parameters is deprecated; use Reconstruction.settings", DeprecationWarning,
                      stacklevel=2)
        return self.settings

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``image_hu``."""
        return tuple(self.image_hu.shape)

