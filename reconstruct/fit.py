"""Fit a coordinate network to a measured sinogram (one training loop for LRNN, WIRE and SIREN).

The image is the network evaluated on the pixel-centre grid times ``output_scale``::

    image[row, col] = output_scale * net(x, y),   x = (col - (W-1)/2) / s,   y = ((H-1)/2 - row) / s,

with ``s = max((H-1)/2, (W-1)/2)`` (isotropic, so the longer axis spans [-1, 1] and pixels stay square;
x right, y up, as in :mod:`operators.geometry`). Its unit is attenuation per pixel unit, because the
projector integrates in pixel units. The loss is the mean squared error between ``radon(image)`` and the
measured sinogram -- :func:`fit` is never given a ground-truth image, so it cannot use one.

Several slices at once: give :func:`fit` a list of ``B`` networks and a ``(B, 1, n_angles, det_count)``
stack of sinograms. The networks are stacked (:class:`reconstruct.models.stacked.StackedModels`) and
evaluated side by side; the objective is the sum of the per-slice objectives, so with Adam each network
follows the path it would follow alone. Learning-rate schedule, divergence roll-back and the stop request
are shared; the early-stop rule ends the fit when every slice has reached its plateau.

Optimisation: Adam, linear warm-up then cosine (or exponential) decay to ``final_lr_factor * lr``;
non-finite losses or gradients roll the network and optimiser back to the last good snapshot and halve
the learning rate (recorded in ``FitResult.events`` and warned).
"""

from __future__ import annotations

import copy
import math
import resource
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsect.operators import Radon
from sparsect.operators.filters import padded_length, ramp_response
from sparsect.reconstruct.models import count_parameters
from sparsect.reconstruct.models.stacked import StackedModels
from sparsect.reconstruct.result import MU_WATER, Reconstruction, StopLike, mu_to_hu
from sparsect.reconstruct.result import stop_requested as _stop_requested


@dataclass(frozen=True)
class EarlyStop:
    """Plateau rule on the sinogram loss: stop when the best loss has not improved by more than
    ``tolerance`` (relative) for ``patience`` iterations. Not checked before ``min_iterations``."""

    patience: int = 200
    tolerance: float = 1e-3
    min_iterations: int = 0


@dataclass
class FitProgress:
    """What a :func:`fit` callback receives.

    iteration : 1-based number of finished iterations; iterations : the budget.
    loss : sinogram MSE of this iteration (line-integral units squared; the mean over slices when
        several networks are fitted at once).
    elapsed : seconds since the fit started; lr : learning rate used for this iteration.
    image : numpy float32 attenuation per pixel unit on preview iterations, else None; (H, W) for one
        network, (B, H, W) for several.
    """

    iteration: int
    iterations: int
    loss: float
    elapsed: float
    lr: float
    image: np.ndarray | None = None


@dataclass
class FitResult(Reconstruction):
    """Outcome of :func:`fit`: a :class:`reconstruct.result.Reconstruction` plus training records.

    image_hu : numpy float32 (H, W), Hounsfield units (``mu_to_hu(mu, mu_water)``); (B, H, W) for several.
    mu : float32 tensor (H, W) on the fitting device, attenuation in 1/mm (``image / pixel_size_mm``);
        (B, 1, H, W) for several networks.
    image : float32 CPU tensor (H, W) (or (B, H, W)), attenuation per pixel unit (what the projector sees).
    curve : sinogram MSE per iteration (line-integral units squared, mean over slices; NaN where an
        iteration diverged).
    n_parameters : parameters of one network.
    parameters : the settings used (also as ``settings``).
    seconds_per_iteration : main-loop wall time / iterations run.
    peak_memory_bytes : CUDA ``max_memory_allocated``; on CPU the growth of the process's peak
        resident set during the fit (0 if the peak was reached earlier); None if unavailable.
    events : divergence recoveries, early/requested stops, fallbacks, in order.
    stop_reason : "completed", "early_stop", "stopped" or "diverged".
    timings : extra wall times in seconds ("loop_seconds", "warm_start_seconds").
    model : the trained network (on the fitting device); a :class:`StackedModels` for several, whose
        original networks also hold their trained parameters.
    """

    image: torch.Tensor | None = None
    seconds_per_iteration: float = float("nan")
    peak_memory_bytes: int | None = None
    events: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def loss_curve(self) -> list[float]:
        return self.curve

    @property
    def settings(self) -> dict[str, Any]:
        return self.parameters

    @property
    def final_loss(self) -> float:
        """Last finite loss of the curve (NaN if none)."""
        finite = [v for v in self.curve if math.isfinite(v)]
        return finite[-1] if finite else float("nan")


# ---------------------------------------------------------------------------------------------- helpers


def pixel_grid(image_size: tuple[int, int], device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates (H*W, 2) as (x, y) in [-1, 1], row-major (index ``row * W + col``)."""
    height, width = int(image_size[0]), int(image_size[1])
    half = max((height - 1) / 2, (width - 1) / 2, 1e-12)
    cols = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2) / half
    rows = ((height - 1) / 2 - torch.arange(height, dtype=torch.float64)) / half
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1).to(device=device, dtype=dtype)


#: A loss above this multiple of the lowest loss so far counts as divergence, like a NaN: a step can throw a
#: fit far off without producing a non-finite value. (A learning rate that never makes progress, e.g. LRNN
#: at 0.3 whose loss stays near its start, is not caught: there is no good state to return to.)
BLOWUP_FACTOR = 100.0
#: Good-state snapshots are only taken while the loss is within this multiple of the lowest so far.
SNAPSHOT_FACTOR = 4.0


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> CUDA when available, else CPU."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lr_at(iteration: int, iterations: int, lr: float, warmup: int, final_lr_factor: float,
          schedule: str = "cosine") -> float:
    """Learning rate of 0-based ``iteration``: linear warm-up over ``warmup`` steps, then cosine or
    exponential decay from ``lr`` to ``final_lr_factor * lr`` at the end of the budget."""
    if warmup > 0 and iteration < warmup:
        return lr * (iteration + 1) / warmup
    span = max(1, iterations - warmup - 1)
    progress = min(1.0, max(0.0, (iteration - warmup) / span))
    if schedule == "cosine":
        return lr * (final_lr_factor + (1 - final_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress)))
    if schedule == "exponential":
        return lr * final_lr_factor ** progress
    raise ValueError(f"unknown schedule {schedule!r}; choose 'cosine' or 'exponential'")


def total_variation(image: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean isotropic total variation of an (..., H, W) image, one value per image (shape (...)),
    smoothed with ``eps`` to stay differentiable."""
    dx = image[..., :-1, 1:] - image[..., :-1, :-1]
    dy = image[..., 1:, :-1] - image[..., :-1, :-1]
    return torch.sqrt(dx * dx + dy * dy + eps).mean(dim=(-2, -1))


def _unbatched(images: torch.Tensor, batch: int) -> torch.Tensor:
    """(B, H, W) -> (H, W) when a single network was fitted."""
    return images[0] if batch == 1 else images


DATA_WEIGHTINGS = ("uniform", "ramp")


def _data_norm(weighting: str, det_count: int, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-slice squared norm (B,) of (B, 1, n_angles, det_count) sinograms: plain mean square ("uniform") or
    weighted by the ramp filter's response along the detector ("ramp"), floored at its first non-zero bin."""
    if weighting == "uniform":
        return lambda x: x.pow(2).mean(dim=(1, 2, 3))
    n = padded_length(det_count)
    ramp = ramp_response(det_count, dtype=torch.float32, device=device)
    weights = ramp.clamp_min(float(ramp[1]))
    weights[1:-1] *= 2  # rfft keeps one of each pair of conjugate interior bins

    def norm(x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, n=n, dim=-1)
        # / (n * det_count): with all weights 1 this is the plain mean square (Parseval)
        return ((spectrum.real.pow(2) + spectrum.imag.pow(2)) * weights).sum(-1).mean(dim=(1, 2)) / (n * det_count)

    return norm


def _rss_bytes() -> int | None:
    try:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
    except (AttributeError, ValueError, OSError):
        return None


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, copy.deepcopy(optimizer.state_dict())


def _all_finite(model: nn.Module) -> bool:
    params = [p.detach() for p in model.parameters()]
    if not params:
        return True
    return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


class _Renderer:
    """Evaluates the network(s) on the pixel grid: ``image = output_scale * net(coords)`` as float32
    (B, H, W), optionally in pixel chunks and under bf16 autocast (CUDA)."""

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor], coords: torch.Tensor, batch: int,
                 image_size: tuple[int, int], output_scale: torch.Tensor, chunk_size: int | None,
                 amp: bool) -> None:
        self.net, self.coords, self.batch, self.image_size = net, coords, batch, image_size
        self.output_scale, self.amp = output_scale.reshape(batch, 1), amp
        n = coords.shape[0]
        step = n if chunk_size is None or chunk_size <= 0 else min(int(chunk_size), n)
        self.slices = [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def _eval(self, coords: torch.Tensor) -> torch.Tensor:
        if self.amp:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                out = self.net(coords)
        else:
            out = self.net(coords)
        return out.reshape(self.batch, -1).float() * self.output_scale

    def image(self) -> torch.Tensor:
        """Differentiable (B, H, W) image (only used without chunking)."""
        return self._eval(self.coords).view(self.batch, *self.image_size)

    @property
    def chunked(self) -> bool:
        return len(self.slices) > 1

    @torch.no_grad()
    def image_no_grad(self) -> torch.Tensor:
        return torch.cat([self._eval(self.coords[s]) for s in self.slices], dim=1).view(
            self.batch, *self.image_size)

    def backward_chunks(self, grad_image: torch.Tensor) -> None:
        """Second pass of chunked training: re-evaluate each chunk with autograd and push ``grad_image``
        (dLoss/dImage, (B, H, W)) into the parameters, so memory is bounded by one chunk."""
        flat = grad_image.reshape(self.batch, -1)
        for s in self.slices:
            self._eval(self.coords[s]).backward(flat[:, s])


# ---------------------------------------------------------------------------------------------- fit


def fit(
    model: nn.Module | Sequence[nn.Module],
    radon: Radon,
    sinogram: torch.Tensor,
    *,
    iterations: int,
    lr: float,
    warmup: int | None = None,
    final_lr_factor: float = 0.1,
    schedule: str = "cosine",
    early_stop: EarlyStop | int | None = None,
    seed: int | None = None,
    device: str | torch.device = "auto",
    amp: bool = False,
    compile: bool = False,
    chunk_size: int | None = None,
    callback: Callable[[FitProgress], None] | None = None,
    callback_every: int = 10,
    preview_every: int | None = 100,
    output_scale: float | Sequence[float] = 1.0,
    tv_weight: float = 0.0,
    init_image: torch.Tensor | None = None,
    init_steps: int = 300,
    stop: StopLike = None,
    pixel_size_mm: float = 1.0,
    mu_water: float = MU_WATER,
    snapshot_every: int = 25,
    max_recoveries: int = 8,
    method: str | None = None,
    data_weighting: str = "uniform",
) -> FitResult:
    """Fit ``model`` (coordinates (N, 2) -> (N, 1)) so that ``radon(output_scale * model(grid))`` matches
    ``sinogram``; or fit ``B`` networks to ``B`` sinograms at once.

    Parameters
    ----------
    model : coordinate network, moved to ``device`` and trained in place; or a sequence of ``B``
        networks of one architecture, or a :class:`StackedModels` of them (one per slice, fitted side
        by side).
    radon : projector whose geometry's ``image_size`` (H, W) defines the image grid.
    sinogram : measured line integrals (n_angles, det_count) (or with leading singleton dims), pixel units;
        (B, 1, n_angles, det_count) or (B, n_angles, det_count) for ``B`` networks.
    iterations, lr : Adam budget and peak learning rate.
    warmup : linear warm-up iterations (default 5 % of ``iterations``).
    final_lr_factor, schedule : the rate decays to ``final_lr_factor * lr``, "cosine" or "exponential".
    early_stop : :class:`EarlyStop` (or an int patience) plateau rule on the sinogram loss.
    seed : seeds torch inside the fit (the global RNG state is restored afterwards); fixes any
        fit-time randomness. Seed the model's initialisation when building it.
    device : "auto" (CUDA when available), "cpu", "cuda", ...
    amp : bf16 autocast of the network on CUDA (ignored off CUDA). Off by default: sine and Gabor
        activations of bf16 pre-activations move a freshly initialised paper-size WIRE's image by 11 %
        and SIREN's by 6 % (CPU autocast, 256²), far above the error of a 40 dB reconstruction. LRNN
        layers always compute in float32. The projection and loss always run in float32.
    compile : ``torch.compile`` the network (falls back to eager with an event if that fails).
    chunk_size : evaluate the network in chunks of this many pixels (two-pass exact gradient:
        forward without autograd, dLoss/dImage, then per-chunk re-evaluation and backward).
    callback, callback_every, preview_every : ``callback(FitProgress)`` every ``callback_every``
        iterations and at the end; every ``preview_every`` iterations it carries the current image.
    output_scale : attenuation per pixel unit corresponding to a network output of 1 (one per slice
        allowed).
    tv_weight : weight of a total-variation penalty on the normalised image ``image / output_scale``;
        the data term in the objective is normalised by ``mean(sinogram**2)``, so the weight is
        independent of the data's scale. The reported loss is always the plain sinogram MSE.
    init_image : warm start (e.g. an FBP image, attenuation per pixel unit, (H, W) or (B, H, W)): before the main
        loop the network is pre-fitted to it for ``init_steps`` Adam steps (image-domain MSE), then the
        main fit starts with a fresh optimiser. A network pre-fit smooths the FBP streaks it cannot
        represent quickly, unlike a fixed base image whose streaks the network would have to cancel.
    stop : ``threading.Event`` or callable returning True to stop early; the image so far is returned.
    pixel_size_mm, mu_water : for the result's ``mu`` [1/mm] and ``image_hu``.
    snapshot_every, max_recoveries : divergence handling (good-state snapshot period, max rollbacks). A
        non-finite loss or gradient, or a loss above ``BLOWUP_FACTOR`` times the lowest so far, restores the
        last good state and halves the learning rate.
    method : name recorded in the result (default the model's class name).
    data_weighting : the data term's norm of the sinogram residual (and of the normalising sinogram power).
        "uniform": plain mean square. "ramp": each projection's squared spectrum weighted by the ramp
        filter's response |w| (floored at its first non-zero frequency, so the DC term still counts).
        ``A^T ramp A`` is close to the identity (it is what FBP inverts), so this preconditions the fit:
        the network no longer has to climb the Radon transform's 1/|w| damping of fine detail. Noise-free,
        consistent data have the same solutions either way. The reported loss is always the plain MSE.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if not 0 < final_lr_factor <= 1:
        raise ValueError(f"final_lr_factor must be in (0, 1], got {final_lr_factor}")
    if data_weighting not in DATA_WEIGHTINGS:
        raise ValueError(f"data_weighting must be one of {DATA_WEIGHTINGS}, got {data_weighting!r}")
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
    scales = [float(output_scale)] * batch if np.ndim(output_scale) == 0 else [float(v) for v in output_scale]
    if len(scales) != batch:
        raise ValueError(f"output_scale has {len(scales)} values for {batch} models")
    if isinstance(early_stop, int) and not isinstance(early_stop, bool):
        early_stop = EarlyStop(patience=early_stop)
    warmup = round(0.05 * iterations) if warmup is None else int(warmup)

    dev = resolve_device(device)
    use_amp = dev.type == "cuda" and amp is True
    image_size = tuple(radon.geometry.image_size)
    events: list[str] = []

    def note(message: str, warn: bool = False) -> None:
        events.append(message)
        if warn:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    if amp is True and dev.type != "cuda":
        note(f"amp requested but bf16 autocast is CUDA-only; running float32 on {dev}")

    settings: dict[str, Any] = dict(
        iterations=iterations, lr=lr, warmup=warmup, final_lr_factor=final_lr_factor, schedule=schedule,
        early_stop=None if early_stop is None else vars(early_stop).copy(), seed=seed, amp=use_amp,
        compile=compile, chunk_size=chunk_size, output_scale=scales[0] if batch == 1 else scales,
        tv_weight=tv_weight, batch=batch,
        init_image=init_image is not None, init_steps=init_steps if init_image is not None else 0,
        data_weighting=data_weighting,
        pixel_size_mm=pixel_size_mm, mu_water=mu_water,
    )

    fork_devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return _fit_loop(network, batch, radon, sinogram, dev, use_amp, image_size, settings, events, note,
                         iterations=iterations, lr=lr, warmup=warmup, final_lr_factor=final_lr_factor,
                         schedule=schedule, early_stop=early_stop, compile=compile, chunk_size=chunk_size,
                         callback=callback, callback_every=max(1, int(callback_every)),
                         preview_every=preview_every, output_scale=scales, tv_weight=tv_weight,
                         init_image=init_image, init_steps=init_steps, stop=stop,
                         pixel_size_mm=pixel_size_mm, mu_water=mu_water,
                         snapshot_every=max(1, int(snapshot_every)), max_recoveries=max_recoveries,
                         data_weighting=data_weighting,
                         method=method or type(getattr(network, "template", network)).__name__.lower())


def _fit_loop(model, batch, radon, sinogram, dev, use_amp, image_size, settings, events, note, *, iterations, lr,
              warmup, final_lr_factor, schedule, early_stop, compile, chunk_size, callback, callback_every,
              preview_every, output_scale, tv_weight, init_image, init_steps, stop, pixel_size_mm, mu_water,
              snapshot_every, max_recoveries, method, data_weighting) -> FitResult:
    start = time.perf_counter()
    rss_before = _rss_bytes() if dev.type != "cuda" else None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    model.to(dev)
    model.train()
    target = sinogram.detach().to(device=dev, dtype=torch.float32).reshape(
        batch, 1, *radon.geometry.sinogram_shape)
    # normalises each slice's data term of the objective
    data_power = _data_norm(data_weighting, radon.geometry.det_count, dev)
    power = data_power(target).clamp_min(1e-30)
    scale = torch.tensor(output_scale, dtype=torch.float32, device=dev).reshape(batch, 1, 1)
    coords = pixel_grid(image_size, dev)
    net: Callable[[torch.Tensor], torch.Tensor] = model
    if compile:
        try:
            net = torch.compile(model)
        except Exception as exc:  # noqa: BLE001 - optional acceleration
            note(f"torch.compile unavailable ({exc!r}); running eager")
    renderer = _Renderer(net, coords, batch, image_size, scale, chunk_size, use_amp)
    params = [p for p in model.parameters() if p.requires_grad]
    n_parameters = model.parameters_per_model() if isinstance(model, StackedModels) else count_parameters(model)
    timings: dict[str, float] = {}

    def objective(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective to minimise, plain sinogram MSE per slice (B,)) of a (B, H, W) float32 image."""
        residual = radon(image[:, None]) - target
        mse = residual.pow(2).mean(dim=(1, 2, 3))
        total = ((mse if data_weighting == "uniform" else data_power(residual)) / power).sum()
        if tv_weight:
            total = total + tv_weight * total_variation(image / scale).sum()
        return total, mse

    def step_grads(image_loss: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]):
        """Forward + backward for one step; returns (image (B, H, W) detached, per-slice loss (B,),
        grad-norm tensor)."""
        if renderer.chunked:
            image = renderer.image_no_grad().requires_grad_(True)
            total, mse = image_loss(image)
            (grad_image,) = torch.autograd.grad(total, image)
            renderer.backward_chunks(grad_image)
        else:
            image = renderer.image()
            total, mse = image_loss(image)
            total.backward()
        grads = [p.grad for p in params if p.grad is not None]
        gnorm = torch.stack(torch._foreach_norm(grads)).sum() if grads else torch.zeros((), device=dev)
        return image.detach(), mse.detach(), gnorm

    def run_compiled_guard(fn):
        """First call of a compiled network: fall back to eager if compilation fails."""
        nonlocal net
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            if net is model:
                raise
            note(f"torch.compile failed at first call ({type(exc).__name__}: {exc}); running eager",
                 warn=True)
            net = model
            renderer.net = model
            for p in params:
                p.grad = None
            return fn()

    # ---- optional warm start: pre-fit the network to init_image ------------------------------------
    if init_image is not None and init_steps > 0:
        t0 = time.perf_counter()
        init = torch.as_tensor(init_image).detach().to(device=dev, dtype=torch.float32)
        if init.numel() != batch * math.prod(image_size):
            raise ValueError(f"init_image must hold {batch} image(s) of {image_size}, got {tuple(init.shape)}")
        init_norm = init.reshape(batch, *image_size) / scale
        pre_opt = torch.optim.Adam(params, lr=lr)
        pre_warm = max(1, init_steps // 10)

        def image_mse(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            loss = (image / scale - init_norm).pow(2).mean(dim=(1, 2))
            return loss.sum(), loss

        pre_steps = 0
        for k in range(init_steps):
            if _stop_requested(stop):
                break
            for g in pre_opt.param_groups:
                g["lr"] = lr_at(k, init_steps, lr, pre_warm, 0.1)
            pre_opt.zero_grad(set_to_none=True)
            if k == 0:
                _, loss, gnorm = run_compiled_guard(lambda: step_grads(image_mse))
            else:
                _, loss, gnorm = step_grads(image_mse)
            if not (math.isfinite(float(loss.sum())) and math.isfinite(float(gnorm))):
                note(f"warm start diverged at step {k}; keeping the network as it was", warn=True)
                break
            pre_opt.step()
            pre_steps += 1
        if not _all_finite(model):
            raise FloatingPointError("warm start produced non-finite parameters")
        timings["warm_start_seconds"] = time.perf_counter() - t0
        note(f"warm start: network pre-fitted to init_image for {pre_steps} steps")

    # ---- main loop -----------------------------------------------------------------------------------
    optimizer = torch.optim.Adam(params, lr=lr)
    good = _snapshot(model, optimizer)
    good_iteration = 0
    lr_scale = 1.0
    recoveries = 0
    curve: list[float] = []
    lowest_loss = float("inf")
    best = [float("inf")] * batch
    best_iteration = [0] * batch
    stop_reason = "completed"
    last_image: torch.Tensor | None = None
    loop_start = time.perf_counter()
    done = 0

    for it in range(iterations):
        if _stop_requested(stop):
            stop_reason = "stopped"
            note(f"stopped by request after {it} iterations")
            break
        current_lr = lr_at(it, iterations, lr, warmup, final_lr_factor, schedule) * lr_scale
        for g in optimizer.param_groups:
            g["lr"] = current_lr
        optimizer.zero_grad(set_to_none=True)
        if it == 0:
            image, mse, gnorm = run_compiled_guard(lambda: step_grads(objective))
        else:
            image, mse, gnorm = step_grads(objective)
        *slice_losses, gnorm_value = torch.cat([mse, gnorm.to(mse.dtype).reshape(1)]).tolist()  # one sync
        loss_value = math.fsum(slice_losses) / batch
        done = it + 1

        finite = math.isfinite(loss_value) and math.isfinite(gnorm_value)
        blown_up = finite and loss_value > BLOWUP_FACTOR * lowest_loss
        if not finite or blown_up:
            curve.append(loss_value if blown_up else float("nan"))
            if recoveries >= max_recoveries:
                stop_reason = "diverged"
                note(f"diverged at iteration {it + 1} after {recoveries} recoveries; giving up", warn=True)
                model.load_state_dict(good[0])
                break
            recoveries += 1
            lr_scale *= 0.5
            model.load_state_dict(good[0])
            optimizer.load_state_dict(copy.deepcopy(good[1]))
            cause = (f"loss {loss_value:.3g} above {BLOWUP_FACTOR:g}x the lowest so far" if blown_up
                     else "non-finite loss/gradient")
            note(f"{cause} at iteration {it + 1}: restored the state of iteration "
                 f"{good_iteration}, learning rate x{lr_scale:g}", warn=True)
            continue

        optimizer.step()
        curve.append(loss_value)
        last_image = image
        lowest_loss = min(lowest_loss, loss_value)

        if (it + 1) % snapshot_every == 0 and loss_value <= SNAPSHOT_FACTOR * lowest_loss:
            if _all_finite(model):
                good = _snapshot(model, optimizer)
                good_iteration = it + 1

        if callback is not None:
            preview = bool(preview_every) and ((it + 1) % preview_every == 0 or it + 1 == iterations)
            if preview or (it + 1) % callback_every == 0 or it + 1 == iterations:
                callback(FitProgress(
                    iteration=it + 1, iterations=iterations, loss=loss_value,
                    elapsed=time.perf_counter() - start, lr=current_lr,
                    image=_unbatched(image, batch).float().cpu().numpy() if preview else None))

        if early_stop is not None:
            for b, value in enumerate(slice_losses):
                if value < best[b] * (1 - early_stop.tolerance):
                    best[b], best_iteration[b] = value, it + 1
            plateaued = all(it + 1 - last >= early_stop.patience for last in best_iteration)
            if it + 1 >= early_stop.min_iterations and plateaued:
                stop_reason = "early_stop"
                note(f"early stop at iteration {it + 1}: no {early_stop.tolerance:g} relative improvement "
                     f"in {early_stop.patience} iterations")
                break

    loop_seconds = time.perf_counter() - loop_start
    timings["loop_seconds"] = loop_seconds

    # ---- final image of the current parameters ------------------------------------------------------
    model.eval()
    if not _all_finite(model):
        model.load_state_dict(good[0])
        note(f"final parameters non-finite: restored the state of iteration {good_iteration}", warn=True)
    with torch.no_grad():
        final = renderer.image_no_grad()
        if not torch.isfinite(final).all() and last_image is not None:
            final = last_image
            note("final image non-finite: returning the last finite training image", warn=True)
    image_cpu = _unbatched(final.detach().float(), batch).cpu()
    seconds = time.perf_counter() - start

    if dev.type == "cuda":
        peak = int(torch.cuda.max_memory_allocated(dev))
    else:
        rss_after = _rss_bytes()
        peak = None if rss_before is None or rss_after is None else max(0, rss_after - rss_before)

    mu = (final[0] if batch == 1 else final[:, None]).detach().float() / float(pixel_size_mm)
    image_hu = np.asarray(mu_to_hu(image_cpu.numpy() / float(pixel_size_mm), mu_water), dtype=np.float32)
    settings["recoveries"] = recoveries
    if isinstance(model, StackedModels):
        model.unstack()
    return FitResult(
        image=image_cpu, mu=mu, image_hu=image_hu, method=method,
        iterations=done, seconds=seconds, curve=curve, parameters=settings, device=str(dev),
        n_parameters=n_parameters, seconds_per_iteration=loop_seconds / done if done else float("nan"),
        peak_memory_bytes=peak, events=events, stop_reason=stop_reason, timings=timings, model=model,
    )


__all__ = ["EarlyStop", "FitProgress", "FitResult", "fit", "lr_at", "pixel_grid", "resolve_device",
           "total_variation"]
