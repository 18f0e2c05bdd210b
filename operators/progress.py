"""Progress reports and stop requests of the long phases below the reconstruction methods.

The honest simulation (:func:`data.simulate`, phase ``"simulation"``) and the build of a projector's sparse
system matrix (phase ``"matrix"``) work in chunks; after every chunk they call a callback with a
:class:`PhaseProgress` and check a stop request (:data:`StopLike`). A stop request that is set raises a
:class:`PhaseStopped` subclass at the next check (at most a fraction of a second of work later), and the
chunked work's arrays are released.

Both :mod:`data` and :mod:`reconstruct` use these helpers (``reconstruct.result`` re-exports
:data:`StopLike` and :func:`stop_requested`); this module imports nothing of sparsect.

The matrix is built inside a method's first projection, so its callback and stop request come from the
context instead of arguments: run the method inside ``with phase_reporting(callback, stop): ...``.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

#: A stop request: None (never stop), a ``threading.Event`` (stop once set) or a zero-argument callable
#: returning True to stop.
StopLike = threading.Event | Callable[[], bool] | None


def stop_requested(stop: StopLike) -> bool:
    """Whether ``stop`` asks to stop now: False for None, ``stop.is_set()`` for an event (anything with
    ``is_set``), else ``bool(stop())``. Iterative methods call it once per iteration."""
    if stop is None:
        return False
    if hasattr(stop, "is_set"):
        return bool(stop.is_set())
    return bool(stop())


@dataclass(frozen=True)
class PhaseProgress:
    """What a phase's callback receives after each chunk of work.

    phase : ``"simulation"`` (:func:`data.simulate`) or ``"matrix"`` (a projector's system-matrix build).
    done : chunks finished so far (1, 2, ..., never decreasing within one run of the phase).
    total : chunks of the whole phase; ``done == total`` is the last report.
    """

    phase: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        """``done / total`` in [0, 1]."""
        return self.done / self.total if self.total else 1.0


#: A phase's progress callback: called with a :class:`PhaseProgress` after each chunk, or None.
PhaseCallback = Callable[[PhaseProgress], None] | None


class PhaseStopped(Exception):  # noqa: N818 - "stopped" reads better than "StoppedError" at the call sites
    """A stop request ended a phase between two chunks; nothing of the phase's work is kept.

    phase, done, total : as in the last :class:`PhaseProgress` (``done`` chunks were finished).
    """

    def __init__(self, phase: str, done: int, total: int) -> None:
        super().__init__(f"{phase} stopped by request after {done} of {total} steps")
        self.phase, self.done, self.total = phase, done, total


class MatrixBuildStopped(PhaseStopped):
    """A stop request ended the build of a projector's sparse system matrix (phase ``"matrix"``)."""


class Steps:
    """The chunks of one phase: :meth:`advance` after each chunk reports it and then checks the stop request.

    ``error`` (a :class:`PhaseStopped` subclass) is raised by :meth:`check` when ``stop`` is set.
    """

    def __init__(self, phase: str, total: int, callback: PhaseCallback = None, stop: StopLike = None,
                 error: type[PhaseStopped] = PhaseStopped) -> None:
        self.phase, self.total, self.done = phase, int(total), 0
        self.callback, self.stop, self.error = callback, stop, error

    def check(self) -> None:
        """Raise ``error`` if the stop request is set."""
        if stop_requested(self.stop):
            raise self.error(self.phase, self.done, self.total)

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` finished chunks, report them, then :meth:`check`."""
        self.done = min(self.total, self.done + steps)
        if self.callback is not None:
            self.callback(PhaseProgress(self.phase, self.done, self.total))
        self.check()


_REPORTING: contextvars.ContextVar[tuple[PhaseCallback, StopLike]] = contextvars.ContextVar(
    "sparsect_phase_reporting", default=(None, None))


@contextlib.contextmanager
def phase_reporting(callback: PhaseCallback = None, stop: StopLike = None) -> Iterator[None]:
    """Within the block (this thread or task), system-matrix builds report to ``callback`` (phase ``"matrix"``)
    and raise :class:`MatrixBuildStopped` at their next check once ``stop`` is set."""
    token = _REPORTING.set((callback, stop))
    try:
        yield
    finally:
        _REPORTING.reset(token)


def current_reporting() -> tuple[PhaseCallback, StopLike]:
    """The (callback, stop) set by the innermost :func:`phase_reporting`, or (None, None)."""
    return _REPORTING.get()


__all__ = ["MatrixBuildStopped", "PhaseCallback", "PhaseProgress", "PhaseStopped", "StopLike", "Steps",
           "current_reporting", "phase_reporting", "stop_requested"]
