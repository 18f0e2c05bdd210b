"""The run layer: every method on a :class:`sparsect.app.scans.Scan`, scored, with progress, stop, per-method
errors and warnings. ``sparsect reconstruct`` (simulated and ``--scan``), the page (both modes) and batch jobs are
thin adapters over :func:`run_tasks` and :func:`reconstruct`; every output is made from
:func:`sparsect.app.records.record` of the :class:`Outcome` objects returned here.

The ground truth never reaches a method: it gets the sinogram, the geometry, the pixel size and the photon count.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sparsect import operators
from sparsect.app.records import record
from sparsect.app.scans import Scan
from sparsect.app.settings import MethodSettings
from sparsect.reconstruct import metrics, registry
from sparsect.reconstruct.consistency import consistency
from sparsect.reconstruct.result import Reconstruction, StopLike, stop_requested

log = logging.getLogger("sparsect.run")

#: The progress name of a measured scan's reference run (a method may also be run as the reference).
REFERENCE = "reference"


@dataclass(frozen=True)
class Task:
    """One method to run with its settings; ``key`` names the result where a caller caches it (the page)."""

    method: str
    settings: MethodSettings
    key: Hashable = None


@dataclass
class Outcome:
    """One method's result on one scan (one image of a stacked reconstruction), scored, or why it failed.

    Attributes
    ----------
    method : the registry name; reconstruction : the method's result (shared by the images of a stacked run; None
        when it failed); index : this image's position in it.
    image_hu, uncertainty_hu : (H, W) HU images (the uncertainty only for a seed ensemble).
    scores : :func:`score` against the scan's reference ({} when unscored); scored_against : what that is, in words.
    consistency_hu : (H, W) data-consistency map in HU; sinogram_residual : (n_views, det_count) ``A x - y`` over
        the scan's check data (every measured view), line integrals; data_rmse : its RMS.
    seconds : this image's share of the run's time; views : views the method got.
    provenance : the scan's :attr:`Scan.provenance`.
    error : why the method failed (then most fields are empty); warnings : what the fit warned about.
    key : the task's key.
    """

    method: str
    reconstruction: Reconstruction | None
    index: int = 0
    image_hu: np.ndarray | None = None
    uncertainty_hu: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)
    scored_against: str | None = None
    consistency_hu: np.ndarray | None = None
    sinogram_residual: np.ndarray | None = None
    data_rmse: float = float("nan")
    seconds: float = 0.0
    views: int = 0
    provenance: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    key: Hashable = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def stopped(self) -> bool:
        """Whether a stop request cut the run short (the image is the iterate reached so far)."""
        return self.reconstruction is not None and self.reconstruction.stop_reason == "stopped"

    def record(self) -> dict[str, Any]:
        """:func:`sparsect.app.records.record` of this outcome."""
        return record(self)


class RunListener:
    """What :func:`run_tasks` reports while it runs; a caller overrides what it shows (every method a no-op)."""

    def started(self, name: str, iterations: int | None) -> None:
        """``name`` (a method, or :data:`REFERENCE`) starts with this main-loop budget."""

    def progress(self, name: str, state: Any) -> None:
        """An iteration's progress (:class:`reconstruct.result.IterationProgress` or
        :class:`reconstruct.fit.FitProgress`)."""

    def phase(self, name: str, state: operators.PhaseProgress) -> None:
        """Progress of work before ``name``'s iterations: its projector building its matrix."""

    def finished(self, name: str, outcome: Outcome) -> None:
        """``name`` ended (``outcome.error`` says when it failed)."""

    def skipped(self, name: str) -> None:
        """``name`` was not run: a stop request came first."""


def score(image_hu: np.ndarray, reference_hu: np.ndarray) -> dict[str, float]:
    """The scores of an (H, W) HU image against an HU reference inside the reconstruction circle
    (:func:`sparsect.reconstruct.metrics.compare`: PSNR (dB) and SSIM over the full CT range, RMSE in HU,
    psnr_range, ssim_range, rmse_soft_hu)."""
    return {key: float(value) for key, value in metrics.compare(image_hu, reference_hu).items()}


def run_reference(scan: Scan, device: str = "cpu", callback: Any = None, stop: StopLike = None
                  ) -> Reconstruction | None:
    """A measured scan's reference: ``scan.reference_method`` with its default budget on every measured view (a
    measured scan's photon count is unknown, so TV takes its noise-blind weight); None without one."""
    if scan.reference_method is None:
        return None
    return registry.run(scan.reference_method, scan.check_sinogram, scan.check_geometry,
                        pixel_size_mm=scan.pixel_size_mm, device=device, callback=callback, stop=stop)


def scored_against(scan: Scan, reference: Reconstruction | None = None) -> str | None:
    """What ``scan``'s scores compare against, in words; None when it is unscored."""
    if scan.reference_hu is not None:
        return f"the object the scan saw ({scan.provenance.get('simulation')} simulation)"
    if scan.reference_method is None or reference is None:
        return None
    return f"{registry.label(scan.reference_method)} of all {scan.check_sinogram.shape[-2]} measured views"


def reconstruct(method: str, scans: Sequence[Scan], settings: MethodSettings, callback: Any = None,
                stop: StopLike = None, reference: Reconstruction | None = None,
                phase_callback: operators.PhaseCallback = None) -> list[Outcome]:
    """``method`` on every scan of ``scans`` in one call (they share one geometry: the sinograms are stacked as
    (B, 1, n_views, det_count)), each image scored against its scan's reference (or ``reference``, a measured scan's
    :func:`run_reference`). ``phase_callback`` receives :class:`sparsect.operators.PhaseProgress` while a projector
    builds its matrix, which ``stop`` interrupts with :class:`sparsect.operators.PhaseStopped`. Errors propagate (a
    batch job halves its batch on running out of GPU memory)."""
    first = scans[0]
    sinogram = first.sinogram if len(scans) == 1 else torch.stack([s.sinogram for s in scans])[:, None]
    with operators.phase_reporting(phase_callback, stop):  # a projector's matrix build reports and stops too
        result = registry.run(method, sinogram, first.geometry, pixel_size_mm=first.pixel_size_mm,
                              iterations=settings.iterations, preset=settings.preset, variant=settings.variant,
                              seed=settings.seed, device=settings.device, photons=first.photons, callback=callback,
                              stop=stop)
    checks = first.check_sinogram if len(scans) == 1 else torch.stack([s.check_sinogram for s in scans])
    maps, residuals = consistency(result.mu, checks, first.check_geometry, first.pixel_size_mm)
    shape = (len(scans), *first.image_size)
    images, maps = np.asarray(result.image_hu).reshape(shape), maps.reshape(shape)
    residuals = residuals.reshape(len(scans), *first.check_geometry.sinogram_shape)
    spreads = None if result.uncertainty_hu is None else np.asarray(result.uncertainty_hu).reshape(shape)
    outcomes = []
    for index, scan in enumerate(scans):
        truth = scan.reference_hu if scan.reference_hu is not None else getattr(reference, "image_hu", None)
        outcomes.append(Outcome(
            method, result, index, images[index], None if spreads is None else spreads[index],
            {} if truth is None else score(images[index], truth), scored_against(scan, reference), maps[index],
            residuals[index], float(np.sqrt(np.mean(residuals[index].astype(np.float64) ** 2))),
            float(result.seconds) / len(scans), scan.views, scan.provenance,
            warnings=list(result.warnings)))
    return outcomes


@dataclass
class RunResult:
    """What :func:`run_tasks` returns: the reference (a measured scan's, else None) and one outcome per task that
    was started, in order (fewer than the tasks after a stop request)."""

    reference: Reconstruction | None
    outcomes: list[Outcome]
    reference_error: str | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def _failure(task: Task, scan: Scan, error: Exception) -> Outcome:
    log.exception("%s failed", task.method)
    return Outcome(task.method, None, views=scan.views, provenance=scan.provenance, key=task.key,
                   error=f"{registry.label(task.method)} failed: {error}")


def _reference(scan: Scan, device: str, listener: RunListener, stop: StopLike) -> tuple[Reconstruction | None,
                                                                                        str | None]:
    if scan.reference_method is None:
        return None, None
    listener.started(REFERENCE, registry.iterations_for(scan.reference_method, None))
    try:
        with operators.phase_reporting(lambda state: listener.phase(REFERENCE, state), stop):
            reference = run_reference(scan, device, lambda state: listener.progress(REFERENCE, state), stop)
    except operators.PhaseStopped:
        listener.skipped(REFERENCE)
        return None, None
    except Exception as error:  # the methods still run, unscored
        log.exception("the reference failed")
        message = f"the reference ({registry.label(scan.reference_method)} of all views) failed: {error}"
        listener.finished(REFERENCE, Outcome(scan.reference_method, None, error=message))
        return None, message
    listener.finished(REFERENCE, Outcome(scan.reference_method, reference, image_hu=reference.image_hu))
    return reference, None


def run_tasks(scan: Scan, tasks: Sequence[Task], listener: RunListener | None = None,
              stop: StopLike = None) -> RunResult:
    """Run every task on ``scan`` in order, after a measured scan's reference, and score each.

    A method that raises gives an :class:`Outcome` with ``error`` and the others still run. ``stop``, once it
    fires, ends the running method at its next check with the result so far (``stop_reason == "stopped"``,
    still scored) and skips the tasks after it (reported to ``listener.skipped``).
    """
    listener = listener or RunListener()
    device = tasks[0].settings.device if tasks else "cpu"
    reference, reference_error = _reference(scan, device, listener, stop)
    outcomes = []
    for task in tasks:
        if stop_requested(stop):
            listener.skipped(task.method)
            continue
        listener.started(task.method, registry.iterations_for(task.method, task.settings.iterations,
                                                              task.settings.preset))
        try:
            outcome, = reconstruct(task.method, [scan], task.settings,
                                   lambda state, m=task.method: listener.progress(m, state), stop, reference,
                                   lambda state, m=task.method: listener.phase(m, state))
            outcome.key = task.key
        except operators.PhaseStopped:  # stopped before it had an image (building its projector): not run
            listener.skipped(task.method)
            continue
        except Exception as error:  # one method's failure is reported with its name; the others run
            outcome = _failure(task, scan, error)
        outcomes.append(outcome)
        listener.finished(task.method, outcome)
    return RunResult(reference, outcomes, reference_error)


def tasks_for(methods: Sequence[str], settings: MethodSettings) -> list[Task]:
    """One :class:`Task` per method, all with ``settings``."""
    return [Task(method, settings) for method in methods]


__all__ = ["REFERENCE", "Outcome", "RunListener", "RunResult", "Task", "reconstruct", "run_reference", "run_tasks",
           "score", "scored_against", "tasks_for"]
