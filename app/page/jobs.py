"""The page's background runs: :class:`Job` runs the run layer (:func:`sparsect.app.run.run_tasks`) on a thread,
with live :class:`Progress` per method (and a measured scan's reference) and a stop request. The worker never
touches Streamlit; the page polls :attr:`Job.progress` and collects :attr:`Job.results`. The simulated and the
measured-scan modes use the same job. Given the server's :class:`sparsect.app.run_queue.RunQueue`, a job takes a
ticket when started and its thread waits for its turn before running (:attr:`Job.waiting`); the page's polls
(:meth:`Job.touch`) keep its place."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsect.app import run
from sparsect.app.run_queue import RunQueue, Standing, Ticket
from sparsect.app.scans import Scan
from sparsect.data.hu import MU_WATER, mu_to_hu
from sparsect.reconstruct import registry
from sparsect.reconstruct.fit import PHASE_STEPS
from sparsect.reconstruct.result import Reconstruction


@dataclass
class Progress:
    """Live state of one method in a background run (read by the page, written by the worker)."""

    method: str
    status: str = "queued"  # queued, running, done, stopped, cancelled, error
    iteration: int = 0
    iterations: int | None = None
    phase: str = "fit"  # "warm_start" while a network is pre-fitted to its warm-start image
    loss: float | None = None
    started: float | None = None
    finished: float | None = None
    preview_hu: np.ndarray | None = None
    preview_iteration: int = 0
    error: str | None = None

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fraction(self) -> float:
        if self.status in ("done", "stopped"):
            return 1.0 if self.status == "done" else min(1.0, self.iteration / max(1, self.iterations or 1))
        if self.iterations:
            return min(1.0, self.iteration / self.iterations)
        return 0.0

    def text(self, name: str | None = None) -> str:
        name = name or registry.label(self.method)
        if self.status in ("queued", "cancelled", "error"):
            return f"{name}: " + {"queued": "waiting", "cancelled": "not run (stopped)", "error": "failed"}[self.status]
        parts = [name]
        if self.iterations:
            parts.append(f"{PHASE_STEPS.get(self.phase, 'iteration')} {self.iteration}/{self.iterations}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3e}")
        parts.append(f"{self.elapsed:.1f} s")
        if self.status == "stopped":
            parts.append("stopped, result kept")
        elif self.status == "done":
            parts.append("done")
        return " | ".join(parts)


class _Listener(run.RunListener):
    """Writes the run layer's reports into the job's :class:`Progress` objects and results."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def started(self, name: str, iterations: int | None) -> None:
        progress = self.job.progress[name]
        progress.status, progress.started, progress.iterations = "running", time.perf_counter(), iterations

    def progress(self, name: str, state: Any) -> None:
        progress = self.job.progress[name]
        progress.phase = getattr(state, "phase", "fit")
        progress.iteration = int(getattr(state, "iteration", progress.iteration))
        progress.iterations = int(getattr(state, "iterations", 0) or 0) or progress.iterations
        loss = getattr(state, "loss", None)
        progress.loss = float(loss) if loss is not None else None
        image = getattr(state, "image", None)
        if image is not None:
            mu = np.asarray(image, dtype=np.float32) / self.job.scan.pixel_size_mm
            progress.preview_hu = np.asarray(mu_to_hu(mu, MU_WATER, clip_negative=False), dtype=np.float32)
            progress.preview_iteration = progress.iteration

    def finished(self, name: str, outcome: run.Outcome) -> None:
        progress = self.job.progress[name]
        progress.finished = time.perf_counter()
        if not outcome.ok:
            progress.status, progress.error = "error", outcome.error
            return
        progress.iteration = int(outcome.reconstruction.iterations) or progress.iteration
        progress.iterations = progress.iterations or int(outcome.reconstruction.iterations) or None
        progress.status = "stopped" if outcome.stopped else "done"
        if name == run.REFERENCE:
            self.job.reference = outcome.reconstruction
        else:
            self.job.results[outcome.key] = outcome

    def skipped(self, name: str) -> None:
        self.job.progress[name].status = "cancelled"


class Job:
    """Runs ``tasks`` (:class:`sparsect.app.run.Task`, each with its cache key) on ``scan`` on a background thread.

    :attr:`progress` maps each method (and :data:`sparsect.app.run.REFERENCE` for a measured scan's reference) to its
    :class:`Progress`; :attr:`results` maps each finished task's key to its :class:`sparsect.app.run.Outcome`;
    :attr:`reference` is a measured scan's reference once it ran.

    Parameters
    ----------
    tasks, scan : what to run.
    queue : the server's run queue (None: start at once); ``need`` the run's memory estimate in bytes and
        ``label`` its name in the queue's log lines.
    """

    def __init__(self, tasks: Iterable[run.Task], scan: Scan, queue: RunQueue | None = None, need: int = 0,
                 label: str = "") -> None:
        self.tasks = list(tasks)
        self.scan = scan
        names = ([run.REFERENCE] if scan.reference_method is not None else []) + [t.method for t in self.tasks]
        self.progress = {name: Progress(scan.reference_method if name == run.REFERENCE else name) for name in names}
        self.results: dict[Any, run.Outcome] = {}
        self.reference: Reconstruction | None = None
        self.stop_event = threading.Event()
        self.collected = False
        self.queue, self.need, self.label = queue, int(need), label or "+".join(t.method for t in self.tasks)
        self.ticket: Ticket | None = None
        self._thread = threading.Thread(target=self._run, name="sparsect-run", daemon=True)

    def start(self) -> Job:
        """Start the thread (after taking a queue ticket: :class:`sparsect.app.run_queue.RunRefused` when the run
        could never fit the server's memory budget; nothing is started then)."""
        if self.queue is not None:
            self.ticket = self.queue.submit(self.need, self.label)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """True until the run ended (waiting for its turn included)."""
        return self._thread.is_alive()

    @property
    def waiting(self) -> bool:
        """True while the run waits in the server's queue."""
        return self.ticket is not None and self.ticket.state == "waiting"

    @property
    def dropped(self) -> str | None:
        """Why the run left the queue without running (cancelled, or its page stopped polling); None otherwise."""
        return self.ticket.why if self.ticket is not None and self.ticket.state == "dropped" else None

    def standing(self) -> Standing | None:
        """The run's place in the queue and estimated start (None without a queue)."""
        return None if self.ticket is None else self.queue.standing(self.ticket)

    def touch(self) -> None:
        """The page polled: keep the run's place in the queue."""
        if self.ticket is not None:
            self.queue.touch(self.ticket)

    def request_stop(self) -> None:
        """Stop the running method (its result so far is kept); a waiting run leaves the queue."""
        self.stop_event.set()
        if self.waiting:
            self.queue.cancel(self.ticket)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self.running

    def finished_outcomes(self) -> list[run.Outcome]:
        """The outcomes of the tasks that ran (a stopped one included), in the order asked for."""
        return [self.results[t.key] for t in self.tasks if t.key in self.results]

    def listener(self) -> run.RunListener:
        """What turns the run layer's reports into :attr:`progress` and :attr:`results`."""
        return _Listener(self)

    def _run(self) -> None:
        if self.ticket is not None and not self.queue.acquire(self.ticket):
            for progress in self.progress.values():
                progress.status = "cancelled"
            return
        try:
            run.run_tasks(self.scan, self.tasks, self.listener(), stop=self.stop_event)
        finally:
            if self.ticket is not None:
                self.queue.release(self.ticket)


__all__ = ["Job", "Progress"]
