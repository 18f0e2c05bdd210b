"""The warm start of a network fit: the image the network is pre-fitted to, and the pre-fit itself.

Before the main loop the network can learn an image (image-domain MSE, Adam with its own warm-up and cosine
decay to a tenth of the rate) instead of starting from its random initialisation
(:attr:`reconstruct.fit_config.FitConfig.warm_start`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from sparsect.operators import Radon
from sparsect.reconstruct.fit_config import FitConfig
from sparsect.reconstruct.result import StopLike, stop_requested
from sparsect.reconstruct.schedule import lr_at
from sparsect.reconstruct.tv_solver import tv

#: A step's loss of a (B, H, W) image: (the sum to differentiate, the per-slice values (B,)).
ImageLoss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: One forward and backward pass of 0-based step ``k`` with a loss: (image, per-slice loss, per-network gradient
#: norm), each with a leading batch axis.
Step = Callable[[int, ImageLoss], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def image_for_warm_start(kind: str, radon: Radon, target: torch.Tensor, photons: float | None,
                         device: torch.device, stop: StopLike = None) -> tuple[torch.Tensor, int | None]:
    """The (B, 1, H, W) warm-start image of the (B, 1, n_angles, det_count) sinograms ``target`` (attenuation
    per pixel unit) on ``device``, and TV's iterations (None for FBP).

    kind : "fbp" (ram-lak FBP) or "tv" (:func:`reconstruct.tv_solver.tv` with its default weight, noise-aware
        when ``photons`` is given; ``stop`` ends it early with its iterate so far, as it ends the fit).
    """
    with torch.no_grad():
        if kind == "fbp":
            return radon.fbp(target.cpu()).to(device), None
        result = tv(target, radon, photons=photons, stop=stop)
        return result.mu.reshape(target.shape[0], 1, *radon.geometry.image_size).to(device), result.iterations


def prefit(step: Step, params: Sequence[torch.Tensor], init_image: torch.Tensor, scale: torch.Tensor,
           config: FitConfig, stop: StopLike, report: Callable[[int, int, float, float], None],
           note: Callable[..., None]) -> int:
    """Pre-fit the network to ``init_image`` for ``config.warm_start_steps`` Adam steps at peak rate
    ``config.lr``; returns the steps taken.

    step : forward and backward of the network(s) for a loss (the fit's, so chunking and compilation apply).
    params : the network's trained tensors. init_image : (B, H, W) float32 on the fitting device, attenuation
        per pixel unit. scale : the output scales, (B, 1, 1); the loss is the mean square of the difference of
        the normalised images ``image / scale``.
    stop : checked before each step. report : ``report(steps done, steps, loss, lr)`` every
        ``config.callback_every`` steps and at the last. note : records (and, with ``warn=True``, warns) events.
    A non-finite loss or gradient ends the pre-fit before that step is applied.
    """
    steps, lr, batch = config.warm_start_steps, config.lr, init_image.shape[0]
    init_norm = init_image / scale
    optimizer = torch.optim.Adam(params, lr=lr)
    warm = max(1, steps // 10)

    def image_mse(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = (image / scale - init_norm).pow(2).mean(dim=(1, 2))
        return loss.sum(), loss

    every, done = max(1, int(config.callback_every)), 0
    for k in range(steps):
        if stop_requested(stop):
            break
        current_lr = lr_at(k, steps, lr, warm, 0.1)
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        optimizer.zero_grad(set_to_none=True)
        _, loss, gnorm = step(k, image_mse)
        loss_value, gnorm_value = float(loss.sum()) / batch, float(gnorm.sum())
        if not (math.isfinite(loss_value) and math.isfinite(gnorm_value)):
            note(f"warm start diverged at step {k}; keeping the network as it was", warn=True)
            break
        optimizer.step()
        done = k + 1
        if done % every == 0 or done == steps:
            report(done, steps, loss_value, current_lr)
    return done


__all__ = ["ImageLoss", "Step", "image_for_warm_start", "prefit"]
