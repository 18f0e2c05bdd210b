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
follows the path it would follow alone. Divergence is handled per network (below); the learning-rate schedule
and the stop request are shared; the early-stop rule ends the fit when every slice has reached its plateau.

Optimisation: Adam, linear warm-up then cosine (or exponential) decay to ``final_lr_factor * lr``;
a non-finite loss or gradient, or a loss that blows up, rolls that network and its optimiser state back to its
last good snapshot and halves its learning rate (recorded in ``FitResult.events`` and warned); a network out
of roll-backs keeps its last good state and is listed in ``FitResult.diverged``.
"""

from __future__ import annotations

import dataclasses
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

from sparsect.data.hu import MU_WATER, mu_to_hu
from sparsect.operators import Radon
from sparsect.operators.filters import padded_length, ramp_response
from sparsect.reconstruct import classical
from sparsect.reconstruct.device import resolve_device
from sparsect.reconstruct.models import count_parameters
from sparsect.reconstruct.models.stacked import StackedModels
from sparsect.reconstruct.result import Reconstruction, StopLike
from sparsect.reconstruct.result import stop_requested as _stop_requested


@dataclass(frozen=True)
class EarlyStop:
    """Plateau rule on the sinogram loss: stop when the best loss has not improved by more than
    ``tolerance`` (relative) for ``patience`` iterations. Not checked before ``min_iterations``."""

    patience: int = 200
    tolerance: float = 1e-3
    min_iterations: int = 0


#: How progress reports name the steps of each :class:`FitProgress` phase.
PHASE_STEPS = {"warm_start": "warm start", "fit": "iteration", "tv_blend": "TV for the blend"}


@dataclass
class FitProgress:
    """What a :func:`fit` callback receives.

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
    """Outcome of :func:`fit`: a :class:`reconstruct.result.Reconstruction` plus training records.

    image_hu : numpy float32 (H, W), Hounsfield units (``mu_to_hu(mu, mu_water)``); (B, H, W) for several.
    mu : float32 tensor (H, W) on the fitting device, attenuation in 1/mm (``image / pixel_size_mm``);
        (B, 1, H, W) for several networks.
    image : float32 CPU tensor (H, W) (or (B, H, W)), attenuation per pixel unit (what the projector sees).
    curve : sinogram MSE per iteration (line-integral units squared, mean over the slices still being fitted; NaN
        where an iteration diverged).
    n_parameters : parameters of one network.
    parameters : the settings used (the :class:`FitConfig` fields, plus batch and recoveries: the roll-backs
        of all networks together).
    seconds_per_iteration : main-loop wall time / iterations run.
    peak_memory_bytes : CUDA ``max_memory_allocated``; on CPU the growth of the process's peak
        resident set during the fit (0 if the peak was reached earlier); None if unavailable.
    events : divergence recoveries, early/requested stops, fallbacks, in order.
    stop_reason : "completed", "early_stop", "discrepancy", "stopped" or "diverged" (every network ran out of
        roll-backs).
    timings : extra wall times in seconds ("loop_seconds", "warm_start_seconds", and
        "warm_start_image_seconds" for a TV warm start).
    warm_start_iterations (inherited): warm-start steps run before the main loop (not in ``iterations``).
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


#: Good-state snapshots are only taken while the loss is within this multiple of the lowest so far.
SNAPSHOT_FACTOR = 4.0


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


def image_gradient(image: torch.Tensor) -> torch.Tensor:
    """Forward differences of (..., H, W) images, (..., 2, H - 1, W - 1): x (along a row) then y (down a
    column), each at the pixels that have both neighbours."""
    dx = image[..., :-1, 1:] - image[..., :-1, :-1]
    dy = image[..., 1:, :-1] - image[..., :-1, :-1]
    return torch.stack((dx, dy), dim=-3)


def smoothed_total_variation(image: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean isotropic total variation of an (..., H, W) image, one value per image (shape (...)),
    smoothed with ``eps`` to stay differentiable."""
    return torch.sqrt(image_gradient(image).pow(2).sum(dim=-3) + eps).mean(dim=(-2, -1))


def total_generalized_variation(image: torch.Tensor, field: torch.Tensor, second_order: float = 2.0,
                                eps: float = 1e-8) -> torch.Tensor:
    """Second-order total generalized variation of (..., H, W) images at a vector field ``w`` (..., 2, H - 1,
    W - 1) laid out as :func:`image_gradient`, one value per image (shape (...)):
    ``mean|grad u - w| + second_order * mean|E w|``, ``E w`` the symmetrised gradient of ``w`` (Frobenius norm),
    smoothed with ``eps``. Minimised over ``w`` too this is TGV (Bredies, Kunisch and Pock 2010): affine
    regions cost nothing, where TV prefers staircases. At ``w = 0`` the first term is
    :func:`smoothed_total_variation`."""
    first = torch.sqrt((image_gradient(image) - field).pow(2).sum(dim=-3) + eps).mean(dim=(-2, -1))
    wx, wy = field[..., 0, :, :], field[..., 1, :, :]
    wx_x = wx[..., :-1, 1:] - wx[..., :-1, :-1]
    wy_y = wy[..., 1:, :-1] - wy[..., :-1, :-1]
    shear = 0.5 * ((wx[..., 1:, :-1] - wx[..., :-1, :-1]) + (wy[..., :-1, 1:] - wy[..., :-1, :-1]))
    second = torch.sqrt(wx_x.pow(2) + wy_y.pow(2) + 2 * shear.pow(2) + eps).mean(dim=(-2, -1))
    return first + second_order * second


def _unbatched(images: torch.Tensor, batch: int) -> torch.Tensor:
    """(B, H, W) -> (H, W) when a single network was fitted."""
    return images[0] if batch == 1 else images


DATA_WEIGHTINGS = ("uniform", "ramp")
#: The warm-start images :class:`FitConfig` can name.
WARM_STARTS = (None, "fbp", "tv")
#: Sharpness of the softplus of ``FitConfig.positive`` (in units of the output scale).
POSITIVE_BETA = 10.0
#: Weight of TGV's second-order term relative to its first (the usual choice of 2).
TGV_SECOND_ORDER = 2.0


def poisson_weights(sinogram: torch.Tensor) -> torch.Tensor:
    """Inverse Poisson variance of each bin of (B, 1, n_angles, det_count) line integrals, up to a constant:
    ``exp(-y)`` normalised to a mean of 1 per slice (same shape). The variance of ``-log(counts / photons)``
    is ``exp(y) / photons`` to first order, so the photon count drops out of the normalised weights."""
    weights = torch.exp(-sinogram.clamp_min(0))
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


def expected_noise_mse(sinogram: torch.Tensor, photons: float) -> torch.Tensor:
    """Expected mean square of the Poisson noise on (B, 1, n_angles, det_count) line integrals measured with
    ``photons`` incident photons per bin, shape (B,): ``mean(exp(y)) / photons`` (0 for ``math.inf``)."""
    if math.isinf(photons):
        return torch.zeros(sinogram.shape[0], dtype=sinogram.dtype, device=sinogram.device)
    return torch.exp(sinogram.clamp_min(0)).mean(dim=(1, 2, 3)) / float(photons)


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
                 amp: bool, positive: bool = False) -> None:
        self.net, self.coords, self.batch, self.image_size = net, coords, batch, image_size
        self.output_scale, self.amp, self.positive = output_scale.reshape(batch, 1), amp, positive
        self.coord_factor = 1.0  # multiplies the coordinates (see FitConfig.coordinate_ramp)
        n = coords.shape[0]
        step = n if chunk_size is None or chunk_size <= 0 else min(int(chunk_size), n)
        self.slices = [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def _eval(self, coords: torch.Tensor) -> torch.Tensor:
        if self.coord_factor != 1.0:
            coords = coords * self.coord_factor
        if self.amp:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                out = self.net(coords)
        else:
            out = self.net(coords)
        out = out.reshape(self.batch, -1).float()
        if self.positive:
            out = torch.nn.functional.softplus(out, beta=POSITIVE_BETA)
        return out * self.output_scale

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


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CoordinateRamp:
    """Coarse-to-fine schedule: the network's input coordinates are multiplied by a factor that rises
    linearly from ``start`` at iteration 0 to 1 at ``until`` (a fraction of the budget), then stays 1."""

    start: float = 0.25
    until: float = 0.5

    def factor(self, iteration: int, iterations: int) -> float:
        """The coordinate factor at 0-based ``iteration`` of ``iterations``."""
        span = max(1, int(iterations * self.until))
        return self.start + (1 - self.start) * min(1.0, iteration / span)


@dataclass(frozen=True)
class FitConfig:
    """Everything :func:`fit` needs besides the network, the projector and the data.

    iterations, lr : Adam budget of the main loop and its peak learning rate.
    warmup : linear warm-up iterations (None: 5 % of ``iterations``).
    final_lr_factor, schedule : the rate decays to ``final_lr_factor * lr``, "cosine" or "exponential".
    early_stop : :class:`EarlyStop` (or an int patience) plateau rule on the sinogram loss; None: off.
    seed : seeds torch inside the fit (the global RNG state is restored afterwards); fixes any
        fit-time randomness. Seed the model's initialisation when building it.
    device : "auto" (CUDA when available), "cpu", "cuda", ...
    amp : bf16 autocast of the network on CUDA (ignored off CUDA). Off by default because sine and Gabor
        activations of bf16 pre-activations move the image by several percent (docs/BENCHMARKS.md). LRNN
        layers always compute in float32; the projection and loss always run in float32.
    compile : ``torch.compile`` the network (falls back to eager with an event if that fails).
    chunk_size : evaluate the network in chunks of this many pixels (two-pass exact gradient:
        forward without autograd, dLoss/dImage, then per-chunk re-evaluation and backward).
    callback_every, preview_every : the callback runs every ``callback_every`` iterations and at the end;
        every ``preview_every`` iterations it carries the current image.
    output_scale : attenuation per pixel unit corresponding to a network output of 1 (a float, or one
        per slice).
    tv_weight : weight of a total-variation penalty on the normalised image ``image / output_scale``;
        the data term is normalised by the sinogram's power, so the weight is independent of the
        data's scale. The reported loss is always the plain sinogram MSE.
    tgv_weight : weight of a second-order total generalized variation penalty on the normalised image
        (:func:`total_generalized_variation`, second-order weight ``TGV_SECOND_ORDER``), its vector field
        fitted with the network by the same optimiser, starting at the image's gradient when the main loop
        starts.
    data_weighting : the data term's norm of the sinogram residual. "uniform": plain mean square.
        "ramp": each projection's squared spectrum weighted by the ramp filter's response |w| (floored at
        its first non-zero frequency). ``A^T ramp A`` is close to the identity (it is what FBP inverts),
        so this preconditions the fit; noise-free, consistent data have the same solutions either way.
    warm_start : None, "fbp" or "tv": before the main loop the network is pre-fitted to the FBP image of
        the sinogram, or to :func:`reconstruct.classical.tv` with its default (noise-aware when ``photons``
        is given) weight, (image-domain MSE) for ``warm_start_steps`` Adam steps, then the main loop starts
        with a fresh optimiser. A network pre-fit smooths the FBP streaks it cannot represent quickly, unlike a
        fixed base image whose streaks the network would have to cancel. :func:`fit`'s ``init_image``
        gives any other warm-start image.
    warm_start_steps : pre-fit steps of the warm start.
    coordinate_ramp : :class:`CoordinateRamp` (coarse to fine), or None.
    photons : incident photons per detector bin of the scan (``math.inf`` noise-free, None unknown): the
        noise level that ``discrepancy`` and the "tv" warm start's weight read.
    noise_weighting : weight each bin's residual by its inverse Poisson variance, ``exp(-y)`` normalised to a
        mean of 1 per slice (weighted least squares; the measured ``y`` stands in for the true one). Combines
        with either ``data_weighting`` (the ramp weighting then applies to the weighted residual).
    discrepancy : None, or a factor ``tau``: stop the main loop (``stop_reason`` "discrepancy") once the plain
        sinogram MSE of every slice is at most ``tau`` times the noise's expected MSE,
        ``mean(exp(y)) / photons`` (the discrepancy principle: fitting further fits the noise). Needs a finite
        ``photons``; ignored (with an event) without one.
    positive : the image is ``output_scale * softplus(net, beta=POSITIVE_BETA)``: attenuation cannot be
        negative (TV's constraint), at the cost of a bend below the output scale's ~1/beta.
    pixel_size_mm, mu_water : for the result's ``mu`` [1/mm] and ``image_hu``.
    snapshot_every, max_recoveries, divergence_factor : divergence handling (good-state snapshot period, most
        roll-backs, and the multiple of a network's lowest loss so far above which a step counts as diverged: a
        step can throw a fit far off without producing a non-finite value). A non-finite loss or gradient, or a
        loss above ``divergence_factor`` times the lowest so far, restores the last good state and halves the
        learning rate. (A learning rate that never makes progress is not caught: there is no good state to
        return to.) ``FitResult.parameters["largest_loss_ratio"]`` records how close the fit came: the largest
        loss over the lowest before it, of any network at any step of the main loop.
    method : name recorded in the result (None: the model's class name).
    """

    iterations: int = 300
    lr: float = 1e-2
    warmup: int | None = None
    final_lr_factor: float = 0.1
    schedule: str = "cosine"
    early_stop: EarlyStop | int | None = None
    seed: int | None = None
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    chunk_size: int | None = None
    callback_every: int = 10
    preview_every: int | None = 100
    output_scale: float | tuple[float, ...] = 1.0
    tv_weight: float = 0.0
    tgv_weight: float = 0.0
    data_weighting: str = "uniform"
    warm_start: str | None = None
    warm_start_steps: int = 300
    coordinate_ramp: CoordinateRamp | None = None
    photons: float | None = None
    noise_weighting: bool = False
    discrepancy: float | None = None
    positive: bool = False
    pixel_size_mm: float = 1.0
    mu_water: float = MU_WATER
    snapshot_every: int = 25
    max_recoveries: int = 8
    divergence_factor: float = 100.0
    method: str | None = None

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 < self.final_lr_factor <= 1:
            raise ValueError(f"final_lr_factor must be in (0, 1], got {self.final_lr_factor}")
        if self.schedule not in ("cosine", "exponential"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose 'cosine' or 'exponential'")
        if self.data_weighting not in DATA_WEIGHTINGS:
            raise ValueError(f"data_weighting must be one of {DATA_WEIGHTINGS}, got {self.data_weighting!r}")
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm_start must be None, 'fbp' or 'tv', got {self.warm_start!r}")
        if self.photons is not None and not (float(self.photons) > 0):
            raise ValueError(f"photons must be a positive number (math.inf: noise-free) or None, got {self.photons!r}")
        for name in ("tv_weight", "tgv_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.divergence_factor) and self.divergence_factor > 1):
            raise ValueError(f"divergence_factor must be a finite number > 1, got {self.divergence_factor}")
        if self.discrepancy is not None and not (math.isfinite(self.discrepancy) and self.discrepancy > 0):
            raise ValueError(f"discrepancy must be a positive number or None, got {self.discrepancy!r}")
        if isinstance(self.early_stop, int) and not isinstance(self.early_stop, bool):
            object.__setattr__(self, "early_stop", EarlyStop(patience=self.early_stop))
        if not isinstance(self.output_scale, (int, float)):
            object.__setattr__(self, "output_scale", tuple(float(v) for v in self.output_scale))

    @property
    def warmup_iterations(self) -> int:
        """The warm-up length: ``warmup``, or 5 % of the budget when None."""
        return round(0.05 * self.iterations) if self.warmup is None else int(self.warmup)

    def scales(self, batch: int) -> list[float]:
        """``output_scale`` as one value per slice."""
        if isinstance(self.output_scale, tuple):
            if len(self.output_scale) != batch:
                raise ValueError(f"output_scale has {len(self.output_scale)} values for {batch} models")
            return list(self.output_scale)
        return [float(self.output_scale)] * batch

    def record(self, batch: int) -> dict[str, Any]:
        """The settings as recorded in ``FitResult.parameters`` (plain values)."""
        fields = dataclasses.asdict(self)
        scales = self.scales(batch)
        fields.update(warmup=self.warmup_iterations, output_scale=scales[0] if batch == 1 else scales, batch=batch)
        return fields


# ---------------------------------------------------------------------------------------------- fit


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


class _DivergenceGuard:
    """Divergence handling for each of a fit's ``batch`` networks (network b owns row b of every trained tensor
    when several are stacked). A non-finite or blown-up loss of network b restores b's last good state (its
    parameters and Adam moments) and halves b's learning rate, at most ``max_recoveries`` times; after that b is
    frozen at its good state while the others go on. So a slice or ensemble member that blows up neither drags
    the others back nor hides in their mean loss. A lone network also gets Adam's step count back; stacked ones
    share it, so theirs runs on (its bias correction is close to 1 after the first few hundred steps)."""

    def __init__(self, params: list[torch.Tensor], optimizer: torch.optim.Optimizer, batch: int, config: FitConfig,
                 note: Callable[..., None]) -> None:
        self.params, self.optimizer, self.batch, self.note = params, optimizer, batch, note
        self.every, self.max_recoveries = max(1, int(config.snapshot_every)), config.max_recoveries
        self.factor = float(config.divergence_factor)
        self.largest_ratio = 1.0
        self.good_params = [p.detach().clone() for p in params]
        self.good_moments: list[dict[str, torch.Tensor]] = [{} for _ in params]  # empty: Adam's fresh state
        self.good_iteration = [0] * batch
        self.lr_scale = [1.0] * batch
        self.recoveries = [0] * batch
        self.lowest_loss = [float("inf")] * batch
        self.frozen = [False] * batch

    def _row(self, tensor: torch.Tensor, b: int) -> torch.Tensor:
        return tensor if self.batch == 1 else tensor[b]

    def label(self, b: int) -> str:
        """How notes name network ``b``: nothing for a lone network."""
        return "" if self.batch == 1 else f"network {b + 1} of {self.batch}: "

    @property
    def active(self) -> list[int]:
        """The networks still being fitted (not frozen)."""
        return [b for b in range(self.batch) if not self.frozen[b]]

    def diverged(self, iteration: int, losses: Sequence[float], grad_norms: Sequence[float]) -> list[int]:
        """The active networks whose step of 1-based ``iteration`` diverged (non-finite loss or gradient, or a
        loss above ``divergence_factor`` times their lowest); each is noted and will be :meth:`restore`\\ d."""
        bad = []
        for b in self.active:
            loss = losses[b]
            finite = math.isfinite(loss) and math.isfinite(grad_norms[b])
            if finite and 0 < self.lowest_loss[b] < math.inf:
                self.largest_ratio = max(self.largest_ratio, loss / self.lowest_loss[b])
            if finite and loss <= self.factor * self.lowest_loss[b]:
                continue
            bad.append(b)
            if self.recoveries[b] >= self.max_recoveries:
                self.frozen[b] = True
                self.note(f"{self.label(b)}diverged at iteration {iteration} after {self.recoveries[b]} recoveries; "
                          f"giving up at the state of iteration {self.good_iteration[b]}", warn=True)
                continue
            self.recoveries[b] += 1
            self.lr_scale[b] *= 0.5
            cause = f"loss {loss:.3g} above {self.factor:g}x the lowest so far" if finite \
                else "non-finite loss/gradient"
            self.note(f"{self.label(b)}{cause} at iteration {iteration}: restored the state of iteration "
                      f"{self.good_iteration[b]}, learning rate x{self.lr_scale[b]:g}", warn=True)
        return bad

    def restore(self, networks: Sequence[int]) -> None:
        """Put ``networks`` back to their good state: parameters, Adam moments, and (one network) Adam's step."""
        with torch.no_grad():
            for p, good, moments in zip(self.params, self.good_params, self.good_moments, strict=True):
                state = self.optimizer.state.get(p, {})
                for b in networks:
                    self._row(p, b).copy_(self._row(good, b))
                    for key, value in state.items():
                        saved = moments.get(key)
                        if key == "step":
                            if self.batch == 1 and isinstance(value, torch.Tensor):
                                value.copy_(saved if saved is not None else torch.zeros_like(value))
                        elif saved is not None:
                            self._row(value, b).copy_(self._row(saved, b))
                        elif _is_moment(value, p):
                            self._row(value, b).zero_()  # saved before Adam's first step: its fresh state

    def restore_nonfinite(self) -> list[int]:
        """Restore the networks whose parameters are not all finite; returns them."""
        broken = [b for b, ok in enumerate(_rows_finite(self.params, self.batch)) if not ok]
        self.restore(broken)
        return broken

    def accept(self, iteration: int, losses: Sequence[float], networks: Sequence[int]) -> None:
        """Record the good ``losses`` of ``networks``, those of the state after ``iteration`` steps (before the
        next is taken); every ``snapshot_every`` iterations that state becomes the good state of those whose loss
        is near their lowest and whose parameters are finite. (A snapshot after a step, before its loss is known,
        can hold the step that blew up: every roll-back would then return to it.)"""
        for b in networks:
            self.lowest_loss[b] = min(self.lowest_loss[b], losses[b])
        if iteration % self.every or not networks:
            return
        finite = _rows_finite(self.params, self.batch)
        chosen = [b for b in networks if finite[b] and losses[b] <= SNAPSHOT_FACTOR * self.lowest_loss[b]]
        with torch.no_grad():
            for p, good, moments in zip(self.params, self.good_params, self.good_moments, strict=True):
                state = self.optimizer.state.get(p, {})
                for key, value in state.items():
                    if _is_moment(value, p) or (key == "step" and isinstance(value, torch.Tensor)):
                        moments.setdefault(key, torch.zeros_like(value))
                for b in chosen:
                    self._row(good, b).copy_(self._row(p, b))
                    for key, value in state.items():
                        if key == "step":
                            if self.batch == 1 and key in moments:
                                moments[key].copy_(value)
                        elif key in moments:
                            self._row(moments[key], b).copy_(self._row(value, b))
        for b in chosen:
            self.good_iteration[b] = iteration

    def learning_rates(self, lr: float) -> list[float]:
        """Each network's learning rate at base rate ``lr`` (0 for a frozen one)."""
        return [0.0 if self.frozen[b] else lr * self.lr_scale[b] for b in range(self.batch)]

    def scale_step(self, before: list[torch.Tensor], rates: Sequence[float], lr: float) -> None:
        """Make the Adam step just taken at rate ``lr`` one at each network's own rate: Adam's update is
        proportional to the rate and its moments do not depend on it. A frozen network keeps ``before``."""
        with torch.no_grad():
            for p, old in zip(self.params, before, strict=True):
                for b, rate in enumerate(rates):
                    row, old_row = self._row(p, b), self._row(old, b)
                    if rate == 0.0:
                        row.copy_(old_row)
                    elif rate != lr:
                        row.copy_(old_row + (rate / lr) * (row - old_row))


def _is_moment(value: object, param: torch.Tensor) -> bool:
    """Whether an optimiser state entry is a per-element moment of ``param`` (Adam's exp_avg, exp_avg_sq)."""
    return isinstance(value, torch.Tensor) and value.shape == param.shape


def _rows_finite(params: Sequence[torch.Tensor], batch: int) -> list[bool]:
    """Per network (row b of every tensor when ``batch`` > 1): whether all its parameters are finite."""
    if not params:
        return [True] * batch
    rows = torch.stack([torch.isfinite(p.detach().reshape(batch, -1)).all(dim=1) for p in params])
    return rows.all(dim=0).tolist()


class _Plateau:
    """The :class:`EarlyStop` rule over ``batch`` slices: done once every slice has plateaued."""

    def __init__(self, rule: EarlyStop, batch: int) -> None:
        self.rule = rule
        self.best = [float("inf")] * batch
        self.best_iteration = [0] * batch

    def reached(self, iteration: int, slice_losses: Sequence[float]) -> bool:
        for b, value in enumerate(slice_losses):
            if value < self.best[b] * (1 - self.rule.tolerance):
                self.best[b], self.best_iteration[b] = value, iteration
        plateaued = all(iteration - last >= self.rule.patience for last in self.best_iteration)
        return iteration >= self.rule.min_iterations and plateaued


class _Fit:
    """One fit, in named steps: :meth:`warm_start`, :meth:`main_loop`, :meth:`finalise`."""

    def __init__(self, model: nn.Module, batch: int, radon: Radon, sinogram: torch.Tensor, config: FitConfig,
                 device: torch.device, callback: Callable[[FitProgress], None] | None, stop: StopLike) -> None:
        self.start = time.perf_counter()
        self.model, self.batch, self.radon, self.config, self.device = model, batch, radon, config, device
        self.callback, self.stop = callback, stop
        self.events: list[str] = []
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
        self.data_norm = _data_norm(config.data_weighting, radon.geometry.det_count, device)
        self.root_weights = poisson_weights(self.target).sqrt() if config.noise_weighting else None
        weighted_target = self.target if self.root_weights is None else self.target * self.root_weights
        self.power = self.data_norm(weighted_target).clamp_min(1e-30)  # normalises each slice's data term
        self.discrepancy_mse: torch.Tensor | None = None  # stop once every slice's MSE is below its value
        if config.discrepancy is not None:
            if config.photons is None or math.isinf(config.photons):
                self.note("discrepancy stop needs a finite photon count (the noise level); running the full budget")
            else:
                self.discrepancy_mse = config.discrepancy * expected_noise_mse(self.target, config.photons)
        self.scale = torch.tensor(config.scales(batch), dtype=torch.float32, device=device).reshape(batch, 1, 1)
        self.net: Callable[[torch.Tensor], torch.Tensor] = model
        if config.compile:
            try:
                self.net = torch.compile(model)
            except Exception as exc:  # noqa: BLE001 - optional acceleration
                self.note(f"torch.compile unavailable ({exc!r}); running eager")
        self.renderer = _Renderer(self.net, pixel_grid(self.image_size, device), batch, self.image_size,
                                  self.scale, config.chunk_size, self.use_amp, config.positive)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.warm_start_iterations = 0
        self.warm_start_source: str | None = None  # "fbp", "tv", "image" (init_image) or None
        self.curve: list[float] = []
        self.done = 0
        self.stop_reason = "completed"
        self.last_image: torch.Tensor | None = None
        self.guard: _DivergenceGuard | None = None
        self.tgv_field: nn.Parameter | None = None  # TGV's vector field, fitted in the main loop

    def note(self, message: str, warn: bool = False) -> None:
        self.events.append(message)
        if warn:
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    def _report(self, progress: FitProgress) -> None:
        if self.callback is not None:
            self.callback(progress)

    def objective(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective to minimise, plain sinogram MSE per slice (B,)) of a (B, H, W) float32 image."""
        residual = self.radon(image[:, None]) - self.target
        mse = residual.pow(2).mean(dim=(1, 2, 3))
        if self.root_weights is not None:
            data_term = self.data_norm(residual * self.root_weights)
        else:
            data_term = mse if self.config.data_weighting == "uniform" else self.data_norm(residual)
        total = (data_term / self.power).sum()
        if self.config.tv_weight:
            total = total + self.config.tv_weight * smoothed_total_variation(image / self.scale).sum()
        if self.tgv_field is not None:
            total = total + self.config.tgv_weight * total_generalized_variation(
                image / self.scale, self.tgv_field, TGV_SECOND_ORDER).sum()
        return total, mse

    def step_grads(self, image_loss: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        return image.detach(), loss.detach(), self.gradient_norms()

    def gradient_norms(self) -> torch.Tensor:
        """(B,): each network's summed gradient norms (row b of every trained tensor when networks are stacked;
        a TGV field is laid out the same way)."""
        grads = [p.grad for p in (self.guard.params if self.guard is not None else self.params) if p.grad is not None]
        if not grads:
            return torch.zeros(self.batch, device=self.device)
        if self.batch == 1:
            return torch.stack(torch._foreach_norm(grads)).sum().reshape(1)
        return torch.stack([g.reshape(self.batch, -1).norm(dim=1) for g in grads]).sum(dim=0)

    def first_step(self, image_loss):
        """The first step of a compiled network: fall back to eager if compilation fails."""
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
        with torch.no_grad():
            if self.config.warm_start == "fbp":
                return self.radon.fbp(self.target.cpu()).to(self.device)
            t0 = time.perf_counter()
            result = classical.tv(self.target, self.radon, photons=self.config.photons)
            self.timings["warm_start_image_seconds"] = time.perf_counter() - t0
            self.note(f"warm start image: TV, {result.iterations} iterations")
            return result.mu.reshape(self.batch, 1, *self.image_size).to(self.device)

    def warm_start(self, init_image: torch.Tensor) -> None:
        """Pre-fit the network to ``init_image`` (image-domain MSE), reporting phase "warm_start"."""
        t0 = time.perf_counter()
        steps, lr = self.config.warm_start_steps, self.config.lr
        init = torch.as_tensor(init_image).detach().to(device=self.device, dtype=torch.float32)
        if init.numel() != self.batch * math.prod(self.image_size):
            raise ValueError(f"init_image must hold {self.batch} image(s) of {self.image_size}, "
                             f"got {tuple(init.shape)}")
        init_norm = init.reshape(self.batch, *self.image_size) / self.scale
        optimizer = torch.optim.Adam(self.params, lr=lr)
        warm = max(1, steps // 10)

        def image_mse(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            loss = (image / self.scale - init_norm).pow(2).mean(dim=(1, 2))
            return loss.sum(), loss

        every = max(1, int(self.config.callback_every))
        for k in range(steps):
            if _stop_requested(self.stop):
                break
            current_lr = lr_at(k, steps, lr, warm, 0.1)
            for group in optimizer.param_groups:
                group["lr"] = current_lr
            optimizer.zero_grad(set_to_none=True)
            _, loss, gnorm = (self.first_step if k == 0 else self.step_grads)(image_mse)
            loss_value, gnorm_value = float(loss.sum()) / self.batch, float(gnorm.sum())
            if not (math.isfinite(loss_value) and math.isfinite(gnorm_value)):
                self.note(f"warm start diverged at step {k}; keeping the network as it was", warn=True)
                break
            optimizer.step()
            self.warm_start_iterations = k + 1
            if (k + 1) % every == 0 or k + 1 == steps:
                self._report(FitProgress(k + 1, steps, loss_value, time.perf_counter() - self.start, current_lr,
                                         phase="warm_start"))
        if not _all_finite(self.model):
            raise FloatingPointError("warm start produced non-finite parameters")
        self.timings["warm_start_seconds"] = time.perf_counter() - t0
        self.note(f"warm start: network pre-fitted to the warm-start image for {self.warm_start_iterations} steps")

    def main_loop(self) -> None:
        """Adam on the sinogram objective with the learning-rate schedule, the divergence guard, the
        optional early stop, the stop request and progress reports."""
        config, iterations = self.config, self.config.iterations
        params = self.params
        if config.tgv_weight:
            self.tgv_field = nn.Parameter(image_gradient(self.renderer.image_no_grad() / self.scale))
            params = [*self.params, self.tgv_field]  # rolled back with the network
        optimizer = torch.optim.Adam(params, lr=config.lr)
        self.guard = guard = _DivergenceGuard(params, optimizer, self.batch, config, self.note)
        plateau = _Plateau(config.early_stop, self.batch) if config.early_stop is not None else None
        every = max(1, int(config.callback_every))
        warmup = config.warmup_iterations
        loop_start = time.perf_counter()
        for it in range(iterations):
            if _stop_requested(self.stop):
                self.stop_reason = "stopped"
                self.note(f"stopped by request after {it} iterations")
                break
            rates = guard.learning_rates(
                lr_at(it, iterations, config.lr, warmup, config.final_lr_factor, config.schedule))
            current_lr = max(rates)
            for group in optimizer.param_groups:
                group["lr"] = current_lr
            if config.coordinate_ramp is not None:
                self.renderer.coord_factor = config.coordinate_ramp.factor(it, iterations)
            optimizer.zero_grad(set_to_none=True)
            image, mse, gnorm = (self.first_step if it == 0 else self.step_grads)(self.objective)
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
            if diverged:
                self.curve.append(loss_value if math.isfinite(loss_value) else float("nan"))
                if not guard.active:
                    self.stop_reason = "diverged"
                    break
                continue
            self.curve.append(loss_value)
            self.last_image = image
            preview = bool(config.preview_every) and ((it + 1) % config.preview_every == 0 or it + 1 == iterations)
            if preview or (it + 1) % every == 0 or it + 1 == iterations:
                self._report(FitProgress(
                    iteration=it + 1, iterations=iterations, loss=loss_value, elapsed=time.perf_counter() - self.start,
                    lr=current_lr, image=_unbatched(image, self.batch).float().cpu().numpy() if preview else None))
            if self.discrepancy_mse is not None and bool((mse[fitting] <= self.discrepancy_mse[fitting]).all()):
                self.stop_reason = "discrepancy"
                self.note(f"discrepancy stop at iteration {it + 1}: the sinogram MSE reached "
                          f"{self.config.discrepancy:g} x the noise's expected MSE")
                break
            if plateau is not None and plateau.reached(it + 1, slice_losses):
                self.stop_reason = "early_stop"
                self.note(f"early stop at iteration {it + 1}: no {config.early_stop.tolerance:g} relative "
                          f"improvement in {config.early_stop.patience} iterations")
                break
        self.timings["loop_seconds"] = time.perf_counter() - loop_start

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
            curve=self.curve, parameters=settings, device=str(self.device), n_parameters=n_parameters,
            seconds_per_iteration=loop_seconds / self.done if self.done else float("nan"), peak_memory_bytes=peak,
            events=self.events, stop_reason=self.stop_reason, timings=self.timings, model=model,
            diverged=[b for b in range(batch) if guard is not None and guard.frozen[b]],
            warm_start_iterations=self.warm_start_iterations,
        )


__all__ = ["PHASE_STEPS", "POSITIVE_BETA", "WARM_STARTS", "CoordinateRamp", "EarlyStop", "FitConfig", "FitProgress",
           "FitResult", "TGV_SECOND_ORDER", "expected_noise_mse", "fit", "image_gradient", "lr_at",
           "pixel_grid", "poisson_weights", "smoothed_total_variation", "total_generalized_variation"]
