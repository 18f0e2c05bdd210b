"""Background run of a measured scan's methods for the page's "Measured scan" mode: the same
:class:`app.page.compute.Job` (progress per method, Stop keeps the running method's result so far, the
rest are skipped) with the reference on all measured views run first and every method scored against it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sparsect.app import measured
from sparsect.app.page import compute as pc
from sparsect.app.settings import MethodSettings
from sparsect.reconstruct.result import Reconstruction

log = logging.getLogger(__name__)

REFERENCE = "reference"  # progress key of the reference run (a method may be run as the reference too)


class MeasuredJob(pc.Job):
    """Run ``methods`` on ``prepared``'s sparse views in the background, after its reference (if any).

    Parameters
    ----------
    prepared : from :func:`app.measured.prepare_scan`.
    methods : registry method names, run in this order with ``settings``.

    Results: :attr:`reference` (None without one, or if it failed) and :meth:`finished_outcomes`.
    """

    def __init__(self, prepared: measured.MeasuredInput, methods: Sequence[str], settings: MethodSettings) -> None:
        super().__init__([pc.Task((m,), m, settings) for m in methods], prepared)  # reads its pixel_size_mm
        self.prepared = prepared
        self.reference: Reconstruction | None = None
        self.outcomes: dict[str, measured.MeasuredOutcome] = {}
        self._device = settings.device
        if prepared.reference is not None:
            self.progress = {REFERENCE: pc.Progress(prepared.reference)} | self.progress

    def finished_outcomes(self) -> list[measured.MeasuredOutcome]:
        """The outcomes of the methods that ran (a stopped one included), in the order asked for."""
        return [self.outcomes[task.method] for task in self.tasks if task.method in self.outcomes]

    def _run(self) -> None:
        if self.prepared.reference is not None:
            self._run_reference()
        super()._run()

    def _run_reference(self) -> None:
        progress = self.progress[REFERENCE]
        progress.status, progress.started = "running", time.perf_counter()
        try:
            self.reference = measured.run_reference(self.prepared, self._device)
        except Exception as exc:  # shown as a message on the page; the methods still run, unscored
            log.exception("the reference failed")
            progress.status, progress.finished = "error", time.perf_counter()
            progress.error = f"The reference ({pc.label(self.prepared.reference)} of all views) failed: {exc}"
            return
        progress.iteration = int(self.reference.iterations)
        progress.iterations = progress.iteration or None
        progress.status, progress.finished = "done", time.perf_counter()

    def _consistency(self, reconstruction: Reconstruction) -> None:
        return None  # measured scans show their sinogram residual instead (app/page/measured.py)

    def _execute(self, task: pc.Task, progress: pc.Progress) -> tuple[Reconstruction, dict[str, float]]:
        outcome = measured.run_method(self.prepared, task.method, task.settings, self.reference,
                                      callback=self._callback(progress), stop=self.stop_event)
        self.outcomes[task.method] = outcome
        return outcome.reconstruction, outcome.metrics


__all__ = ["REFERENCE", "MeasuredJob"]
