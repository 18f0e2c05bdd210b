"""Fit a coordinate network to a measured sinogram (one training loop for LRNN, WIRE and SIREN).

The image is the network evaluated on the pixel-centre grid times ``output_scale`` (:mod:`reconstruct.render`),
in attenuation per pixel unit, because the projector integrates in pixel units. The loss is the mean squared
error between ``radon(image)`` and the measured sinogram (:mod:`reconstruct.data_terms` for its weightings,
:mod:`reconstruct.regularisers` for the optional TV and TGV penalties) -- :func:`fit` is never given a
ground-truth image, so it cannot use one.

Several slices at once: give :func:`fit` a list of ``B`` networks and a ``(B, 1, n_angles, det_count)``
stack of sinograms. The networks are stacked (:class:`reconstruct.models.stacked.StackedModels`) and
evaluated side by side; the objective is the sum of the per-slice objectives, so with Adam each network
follows the path it would follow alone. Divergence is handled per network (below); the learning-rate schedule
and the stop request are shared; the early-stop rule ends the fit when every slice has reached its plateau.

Optimisation: Adam, linear warm-up then cosine (or exponential) decay to ``final_lr_factor * lr``;
a non-finite loss or gradient, or a loss that blows up, rolls that network and its optimiser state back to its
last good snapshot and halves its learning rate (recorded in ``FitResult.events`` and warned); a network out
of roll-backs keeps its last good state and is listed in ``FitResult.diverged`` (:mod:`reconstruct.divergence`).
The settings are a :class:`reconstruct.fit_config.FitConfig`, the reports :mod:`reconstruct.fit_result`; the warm
start is :mod:`reconstruct.warm_start`, the schedule and the early-stop rule :mod:`reconstruct.schedule`. This
module re-exports their public names (``image_gradient`` is :func:`reconstruct.regularisers.gradient`).
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsect.data.hu import mu_to_hu
from sparsect.operators import Radon
from sparsect.reconstruct.data_terms import DATA_WEIGHTINGS, FitObjective, expected_noise_mse, poisson_weights
from sparsect.reconstruct.data_terms import data_norm as _data_norm  # noqa: F401 - importable from here too
from sparsect.reconstruct.device import resolve_device
from sparsect.reconstruct.divergence import DivergenceGuard, all_finite, gradient_norms
from sparsect.reconstruct.fit_config import WARM_STARTS, CoordinateRamp, EarlyStop, FitConfig
from sparsect.reconstruct.fit_result import PHASE_STEPS, FitProgress, FitResult
from sparsect.reconstruct.models import count_parameters
from sparsect.reconstruct.models.stacked import StackedModels
from sparsect.reconstruct.regularisers import (
    TGV_SECOND_ORDER,
    gradient,
    smoothed_total_variation,
    total_generalized_variation,
)
from sparsect.reconstruct.regularisers import gradient as image_gradient
from sparsect.reconstruct.render import POSITIVE_BETA, Renderer, pixel_grid
from sparsect.reconstruct.result import StopLike
from sparsect.reconstruct.result import stop_requested as _stop_requested
from sparsect.reconstruct.schedule import Plateau, lr_at
from sparsect.reconstruct.warm_start import ImageLoss, image_for_warm_start, prefit


def _unbatched(images: torch.Tensor, batch: int) -> torch.Tensor:
    """(B, H, W) -> (H, W) when a single network was fitted."""
    return images[0] if batch == 1 else images


def _rss_bytes() -> int | None:
    try:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
    except (AttributeError, ValueError, OSError):
        return None


def fit(
    model: nn.Module | Sequence[nn.Module],
    radon: Radon,
    sinogram: torch.Tensor,
    config: FitConfig | None = None,
    *,
    init_image: torch.Tensor | None = None,
    callback: Callable[[FitProgress], None] | None = None,
    stop: StopLike = None,
    **overrides: Any,
) -> FitResult:
    """Fit ``model`` (coordinates (N, 2) -> (N, 1)) so that ``radon(output_scale * model(grid))`` matches
    ``sinogram``; or fit ``B`` networks to ``B`` sinograms at once.

    Parameters
    ----------
    model : coordinate network, moved to the device and trained in place; or a sequence of ``B``
        networks of one architecture, or a :class:`StackedModels` of them (one per slice, fitted side
        by side).
    radon : projector whose geometry's ``image_size`` (H, W) defines the image grid.
    sinogram : measured line integrals (n_angles, det_count) (or with leading singleton dims), pixel units;
        (B, 1, n_angles, det_count) or (B, n_angles, det_count) for ``B`` networks.
    config : the :class:`FitConfig`; ``overrides`` replace its fields (``fit(..., iterations=50, lr=0.1)``).
    init_image : a warm-start image (attenuation per pixel unit, (H, W) or (B, H, W)) the network is
        pre-fitted to for ``config.warm_start_steps`` steps; ``config.warm_start`` ("fbp", "tv") names one instead.
    callback : ``callback(FitProgress)`` during the warm start (phase "warm_start") and the main loop.
    stop : ``threading.Event`` or callable returning True to stop early; the image so far is returned.
    """
    config = dataclasses.replace(config or FitConfig(), **overrides) if overrides else (config or FitConfig())
    if isinstance(model, nn.Module):
        network, batch = model, len(model) if isinstance(model, StackedModels) else 1
    else:
        models = list(model)
        if not models:
            raise ValueError("fit needs at least one model")
        network, batch = (models[0], 1) if len(models) == 1 else (StackedModels(models), len(models))
    if not isinstance(sinogram, torch.Tensor):
        sinogram = torch.as_tensor(np.asarray(sinogram))
    expected = tuple(radon.geometry.sinogram_shape)
    if tuple(sinogram.shape[-2:]) != expected or sinogram.numel() != batch * math.prod(expected):
        wanted = expected if batch == 1 else (batch, 1, *expected)
        raise ValueError(f"sinogram must have shape {wanted} for {batch} model(s), got {tuple(sinogram.shape)}")
    if config.coarse_grid is not None:
        from sparsect.reconstruct.grid_levels import coarse_size, fit_on_grids

        size = coarse_size(tuple(radon.geometry.image_size), config.coarse_grid)
        if size is not None:
            return fit_on_grids(network, radon, sinogram, config, size, init_image, callback, stop)
    device = resolve_device(config.device)
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, enabled=config.seed is not None):
        if config.seed is not None:
            torch.manual_seed(config.seed)
        radon.expect_calls(2 * config.iterations)  # a forward and an adjoint per main-loop step
        run = _Fit(network, batch, radon, sinogram, config, device, callback, stop)
        if init_image is not None:
            run.warm_start_source = "image"
        elif config.warm_start is not None:
            run.warm_start_source = config.warm_start
            init_image = run.warm_start_image()
        if init_image is not None and config.warm_start_steps > 0:
            run.warm_start(init_image)
        run.main_loop()
        return run.finalise()


class _Fit:
    """One fit, in named steps: :meth:`warm_start`, :meth:`main_loop`, :meth:`finalise`."""

    def __init__(self, model: nn.Module, batch: int, radon: Radon, sinogram: torch.Tensor, config: FitConfig,
                 device: torch.device, callback: Callable[[FitProgress], None] | None, stop: StopLike) -> None:
        self.start = time.perf_counter()
        self.model, self.batch, self.radon, self.config, self.device = model, batch, radon, config, device
        self.callback, self.stop = callback, stop
        self.events: list[str] = []
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}
        self.use_amp = device.type == "cuda" and config.amp is True
        if config.amp is True and device.type != "cuda":
            self.note(f"amp requested but bf16 autocast is CUDA-only; running float32 on {device}")
        self.rss_before = _rss_bytes() if device.type != "cuda" else None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.image_size = tuple(radon.geometry.image_size)
        model.to(device)
        model.train()
        self.target = sinogram.detach().to(device=device, dtype=torch.float32).reshape(
            batch, 1, *radon.geometry.sinogram_shape)
        self.discrepancy_mse: torch.Tensor | None = None  # stop once every slice's MSE is below its value
        if config.discrepancy is not None:
            if config.photons is None or math.isinf(config.photons):
                self.note("discrepancy stop needs a finite photon count (the noise level); running the full budget")
            else:
                self.discrepancy_mse = config.discrepancy * expected_noise_mse(self.target, config.photons)
        self.scale = torch.tensor(config.scales(batch), dtype=torch.float32, device=device).reshape(batch, 1, 1)
        self.objective = FitObjective(radon, self.target, config.data_weighting, config.noise_weighting, self.scale,
                                      config.tv_weight, config.tgv_weight)
        self.net: Callable[[torch.Tensor], torch.Tensor] = model
        if config.compile:
            try:
                self.net = torch.compile(model)
            except Exception as exc:  # noqa: BLE001 - optional acceleration
                self.note(f"torch.compile unavailable ({exc!r}); running eager")
        self.renderer = Renderer(self.net, pixel_grid(self.image_size, device), batch, self.image_size,
                                 self.scale, config.chunk_size, self.use_amp, config.positive)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.warm_start_iterations = 0
        self.warm_start_source: str | None = None  # "fbp", "tv", "image" (init_image) or None
        self.curve: list[float] = []
        self.done = 0
        self.stop_reason = "completed"
        self.last_image: torch.Tensor | None = None
        self.guard: DivergenceGuard | None = None

    def note(self, message: str, warn: bool = False) -> None:
        """Record an event of the fit; with ``warn`` also as a ``RuntimeWarning`` (kept in ``warnings``)."""
        self.events.append(message)
        if warn:
            self.warnings.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    def _report(self, progress: FitProgress) -> None:
        if self.callback is not None:
            self.callback(progress)

    def step_grads(self, image_loss: ImageLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward + backward for one step: (image (B, H, W) detached, per-slice loss (B,), per-network
        gradient norm (B,))."""
        if self.renderer.chunked:
            image = self.renderer.image_no_grad().requires_grad_(True)
            total, loss = image_loss(image)
            total.backward()  # dLoss/dImage, and the gradient of any parameter of the objective itself
            self.renderer.backward_chunks(image.grad)
        else:
            image = self.renderer.image()
            total, loss = image_loss(image)
            total.backward()
        trained = self.guard.params if self.guard is not None else self.params
        return image.detach(), loss.detach(), gradient_norms(trained, self.batch, self.device)

    def step(self, k: int, image_loss: ImageLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`step_grads` of 0-based step ``k``; at the first step of a compiled network, falls back to
        eager if compilation fails."""
        if k > 0:
            return self.step_grads(image_loss)
        try:
            return self.step_grads(image_loss)
        except Exception as exc:  # noqa: BLE001
            if self.net is self.model:
                raise
            self.note(f"torch.compile failed at first call ({type(exc).__name__}: {exc}); running eager", warn=True)
            self.net = self.renderer.net = self.model
            for p in self.params:
                p.grad = None
            return self.step_grads(image_loss)

    def warm_start_image(self) -> torch.Tensor:
        """The (B, 1, H, W) warm-start image named by ``config.warm_start`` (attenuation per pixel unit)."""
        t0 = time.perf_counter()
        image, tv_iterations = image_for_warm_start(self.config.warm_start, self.radon, self.target,
                                                    self.config.photons, self.device, self.stop)
        if tv_iterations is not None:
            self.timings["warm_start_image_seconds"] = time.perf_counter() - t0
            self.note(f"warm start image: TV, {tv_iterations} iterations")
        return image

    def warm_start(self, init_image: torch.Tensor) -> None:
        """Pre-fit the network to ``init_image`` (image-domain MSE), reporting phase "warm_start"."""
        t0 = time.perf_counter()
        init = torch.as_tensor(init_image).detach().to(device=self.device, dtype=torch.float32)
        if init.numel() != self.batch * math.prod(self.image_size):
            raise ValueError(f"init_image must hold {self.batch} image(s) of {self.image_size}, "
                             f"got {tuple(init.shape)}")

        def report(done: int, steps: int, loss: float, lr: float) -> None:
            self._report(FitProgress(done, steps, loss, time.perf_counter() - self.start, lr, phase="warm_start"))

        self.warm_start_iterations = prefit(self.step, self.params, init.reshape(self.batch, *self.image_size),
                                            self.scale, self.config, self.stop, report, self.note)
        if not all_finite(self.model):
            raise FloatingPointError("warm start produced non-finite parameters")
        self.timings["warm_start_seconds"] = time.perf_counter() - t0
        self.note(f"warm start: network pre-fitted to the warm-start image for {self.warm_start_iterations} steps")

    def main_loop(self) -> None:
        """Adam on the sinogram objective with the learning-rate schedule, the divergence guard, the
        optional early stop, the stop request and progress reports."""
        config = self.config
        params = self.params
        if config.tgv_weight:
            self.objective.tgv_field = nn.Parameter(gradient(self.renderer.image_no_grad() / self.scale))
            params = [*self.params, self.objective.tgv_field]  # rolled back with the network
        optimizer = torch.optim.Adam(params, lr=config.lr)
        self.guard = DivergenceGuard(params, optimizer, self.batch, config, self.note)
        plateau = Plateau(config.early_stop, self.batch) if config.early_stop is not None else None
        loop_start = time.perf_counter()
        for it in range(config.iterations):
            if _stop_requested(self.stop):
                self.stop_reason = "stopped"
                self.note(f"stopped by request after {it} iterations")
                break
            image, mse, slice_losses, loss_value, current_lr, diverged = self._iteration(it, params, optimizer)
            if diverged:
                self.curve.append(loss_value if math.isfinite(loss_value) else float("nan"))
                if not self.guard.active:
                    self.stop_reason = "diverged"
                    break
                continue
            self.curve.append(loss_value)
            self.last_image = image
            self._report_iteration(it, image, loss_value, current_lr)
            if self._stop_rule_met(it, mse, slice_losses, plateau):
                break
        self.timings["loop_seconds"] = time.perf_counter() - loop_start

    def _iteration(self, it: int, params: list[torch.Tensor], optimizer: torch.optim.Optimizer
                   ) -> tuple[torch.Tensor, torch.Tensor, list[float], float, float, list[int]]:
        """Main-loop step ``it`` (0-based): schedule, forward and backward, divergence check, Adam step, roll-backs.
        Returns (image (B, H, W), per-slice MSE (B,) tensor and list, the mean loss of the networks being fitted,
        the learning rate, the networks that diverged)."""
        config, guard = self.config, self.guard
        rates = guard.learning_rates(
            lr_at(it, config.iterations, config.lr, config.warmup_iterations, config.final_lr_factor, config.schedule))
        current_lr = max(rates)
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        if config.coordinate_ramp is not None:
            self.renderer.coord_factor = config.coordinate_ramp.factor(it, config.iterations)
        optimizer.zero_grad(set_to_none=True)
        image, mse, gnorm = self.step(it, self.objective)
        values = torch.cat([mse, gnorm.to(mse.dtype)]).tolist()  # one sync
        slice_losses, grad_norms = values[:self.batch], values[self.batch:]
        fitting = guard.active
        loss_value = math.fsum(slice_losses[b] for b in fitting) / len(fitting)
        self.done = it + 1
        diverged = guard.diverged(it + 1, slice_losses, grad_norms)
        guard.accept(it, slice_losses, [b for b in guard.active if b not in diverged])
        before = [p.detach().clone() for p in params] if len(set(rates)) > 1 else None
        optimizer.step()
        if before is not None:
            guard.scale_step(before, rates, current_lr)
        guard.restore(diverged)
        return image, mse, slice_losses, loss_value, current_lr, diverged

    def _report_iteration(self, it: int, image: torch.Tensor, loss_value: float, lr: float) -> None:
        """Report main-loop step ``it`` to the callback every ``callback_every`` steps, on preview steps (with the
        image) and at the last."""
        config, done = self.config, it + 1
        last = done == config.iterations
        preview = bool(config.preview_every) and (done % config.preview_every == 0 or last)
        if preview or done % max(1, int(config.callback_every)) == 0 or last:
            self._report(FitProgress(
                iteration=done, iterations=config.iterations, loss=loss_value, elapsed=time.perf_counter() - self.start,
                lr=lr, image=_unbatched(image, self.batch).float().cpu().numpy() if preview else None))

    def _stop_rule_met(self, it: int, mse: torch.Tensor, slice_losses: list[float], plateau: Plateau | None) -> bool:
        """Whether the discrepancy or the early-stop rule ends the fit after step ``it`` (noted, with the reason)."""
        fitting = self.guard.active
        if self.discrepancy_mse is not None and bool((mse[fitting] <= self.discrepancy_mse[fitting]).all()):
            self.stop_reason = "discrepancy"
            self.note(f"discrepancy stop at iteration {it + 1}: the sinogram MSE reached "
                      f"{self.config.discrepancy:g} x the noise's expected MSE")
            return True
        if plateau is not None and plateau.reached(it + 1, slice_losses):
            rule = self.config.early_stop
            self.stop_reason = "early_stop"
            self.note(f"early stop at iteration {it + 1}: no {rule.tolerance:g} relative "
                      f"improvement in {rule.patience} iterations")
            return True
        return False

    def finalise(self) -> FitResult:
        """The image of the final parameters (or the last good / last finite one), HU, timings, memory."""
        config, batch = self.config, self.batch
        self.model.eval()
        guard = self.guard
        for b in guard.restore_nonfinite() if guard is not None else []:
            self.note(f"{guard.label(b)}final parameters non-finite: restored the state of iteration "
                      f"{guard.good_iteration[b]}", warn=True)
        with torch.no_grad():
            final = self.renderer.image_no_grad()
            if not torch.isfinite(final).all() and self.last_image is not None:
                final = self.last_image
                self.note("final image non-finite: returning the last finite training image", warn=True)
        image_cpu = _unbatched(final.detach().float(), batch).cpu()
        seconds = time.perf_counter() - self.start
        if self.device.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            rss_after = _rss_bytes()
            peak = None if self.rss_before is None or rss_after is None else max(0, rss_after - self.rss_before)
        pixel_size_mm = float(config.pixel_size_mm)
        mu = (final[0] if batch == 1 else final[:, None]).detach().float() / pixel_size_mm
        image_hu = np.asarray(mu_to_hu(image_cpu.numpy() / pixel_size_mm, config.mu_water, clip_negative=False),
                              dtype=np.float32)
        settings = config.record(batch)
        settings.update(amp=self.use_amp, recoveries=sum(guard.recoveries) if guard is not None else 0,
                        largest_loss_ratio=guard.largest_ratio if guard is not None else 1.0,
                        warm_start=self.warm_start_source, warm_start_steps=self.config.warm_start_steps
                        if self.warm_start_source else 0)
        model = self.model
        n_parameters = model.parameters_per_model() if isinstance(model, StackedModels) else count_parameters(model)
        if isinstance(model, StackedModels):
            model.unstack()
        loop_seconds = self.timings.get("loop_seconds", 0.0)
        method = config.method or type(getattr(model, "template", model)).__name__.lower()
        return FitResult(
            image=image_cpu, mu=mu, image_hu=image_hu, method=method, iterations=self.done, seconds=seconds,
            curve=self.curve, settings=settings, device=str(self.device), n_parameters=n_parameters,
            seconds_per_iteration=loop_seconds / self.done if self.done else float("nan"), peak_memory_bytes=peak,
            events=self.events, warnings=self.warnings, stop_reason=self.stop_reason, timings=self.timings, model=model,
            diverged=[b for b in range(batch) if guard is not None and guard.frozen[b]],
            warm_start_iterations=self.warm_start_iterations,
        )


__all__ = ["DATA_WEIGHTINGS", "PHASE_STEPS", "POSITIVE_BETA", "TGV_SECOND_ORDER", "WARM_STARTS", "CoordinateRamp",
           "EarlyStop", "FitConfig", "FitProgress", "FitResult", "expected_noise_mse", "fit", "gradient",
           "image_gradient", "lr_at", "pixel_grid", "poisson_weights", "smoothed_total_variation",
           "total_generalized_variation"]
