"""The settings of a network fit (:class:`FitConfig`) and the schedules it names, each checked when built.

:class:`FitConfig` holds everything :func:`reconstruct.fit.fit` needs besides the network, the projector and the
data; :class:`EarlyStop` and :class:`CoordinateRamp` are two of its fields.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from sparsect.data.hu import MU_WATER

#: The warm-start images :class:`FitConfig` can name.
WARM_STARTS = (None, "fbp", "tv")
#: How the data term weights the sinogram's frequencies: evenly, or by the ramp filter (reconstruct.data_terms).
DATA_WEIGHTINGS = ("uniform", "ramp")


@dataclass(frozen=True)
class EarlyStop:
    """Plateau rule on the sinogram loss: stop when the best loss has not improved by more than
    ``tolerance`` (relative) for ``patience`` iterations. Not checked before ``min_iterations``."""

    patience: int = 200
    tolerance: float = 1e-3
    min_iterations: int = 0


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
    """Everything :func:`reconstruct.fit.fit` needs besides the network, the projector and the data.

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
    tv_weight : weight of a total-variation penalty on the normalised image ``image / output_scale``, the mean
        TV per pixel (:func:`reconstruct.regularisers.smoothed_total_variation`); the data term is normalised by
        the sinogram's power, so the weight is independent of the data's scale. The reported loss is always the
        plain sinogram MSE.
    tgv_weight : weight of a second-order total generalized variation penalty on the normalised image
        (:func:`reconstruct.regularisers.total_generalized_variation`, second-order weight ``TGV_SECOND_ORDER``),
        its vector field fitted with the network by the same optimiser, starting at the image's gradient when the
        main loop starts.
    data_weighting : the data term's norm of the sinogram residual. "uniform": plain mean square.
        "ramp": each projection's squared spectrum weighted by the ramp filter's response |w| (floored at
        its first non-zero frequency). ``A^T ramp A`` is close to the identity (it is what FBP inverts),
        so this preconditions the fit; noise-free, consistent data have the same solutions either way.
    warm_start : None, "fbp" or "tv": before the main loop the network is pre-fitted to the FBP image of
        the sinogram, or to :func:`reconstruct.tv_solver.tv` with its default (noise-aware when ``photons``
        is given) weight, (image-domain MSE) for ``warm_start_steps`` Adam steps, then the main loop starts
        with a fresh optimiser. A network pre-fit smooths the FBP streaks it cannot represent quickly, unlike a
        fixed base image whose streaks the network would have to cancel. :func:`reconstruct.fit.fit`'s
        ``init_image`` gives any other warm-start image.
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
    positive : the image is ``output_scale * softplus(net, beta=POSITIVE_BETA)`` (:mod:`reconstruct.render`):
        attenuation cannot be negative (TV's constraint), at the cost of a bend below the output scale's ~1/beta.
    pixel_size_mm, mu_water : for the result's ``mu`` [1/mm] and ``image_hu``.
    snapshot_every, max_recoveries, divergence_factor : divergence handling (good-state snapshot period, most
        roll-backs, and the multiple of a network's lowest loss so far above which a step counts as diverged: a
        step can throw a fit far off without producing a non-finite value). A non-finite loss or gradient, or a
        loss above ``divergence_factor`` times the lowest so far, restores the last good state and halves the
        learning rate. (A learning rate that never makes progress is not caught: there is no good state to
        return to.) ``FitResult.settings["largest_loss_ratio"]`` records how close the fit came: the largest
        loss over the lowest before it, of any network at any step of the main loop.
    coarse_grid, fine_iterations : a fit on two grids (:mod:`reconstruct.grid_levels`): where the scan's grid is
        larger than ``coarse_grid`` pixels a side, the warm start and the first ``iterations - fine_iterations``
        steps run on a grid of that size over the same field of view (the same sinogram, a projector on larger
        pixels), the last ``min(fine_iterations, iterations)`` on the scan's own grid. None: the scan's own grid
        throughout.
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
    coarse_grid: int | None = None
    fine_iterations: int = 0
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
        if self.coarse_grid is not None and not (isinstance(self.coarse_grid, int) and self.coarse_grid >= 8):
            raise ValueError(f"coarse_grid must be a whole number of pixels >= 8 or None, got {self.coarse_grid!r}")
        if not (isinstance(self.fine_iterations, int) and self.fine_iterations >= 0):
            raise ValueError(f"fine_iterations must be a whole number >= 0, got {self.fine_iterations!r}")
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
        """The settings as recorded in ``FitResult.settings`` (plain values)."""
        fields = dataclasses.asdict(self)
        scales = self.scales(batch)
        fields.update(warmup=self.warmup_iterations, output_scale=scales[0] if batch == 1 else scales, batch=batch)
        return fields


__all__ = ["CoordinateRamp", "EarlyStop", "FitConfig", "WARM_STARTS"]
