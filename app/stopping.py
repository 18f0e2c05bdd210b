"""Graceful stop for the command-line tools: the first Ctrl-C (or SIGTERM) asks the running work to stop at
its next check and keep what it has; a second Ctrl-C aborts at once with ``KeyboardInterrupt``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143


class GracefulStop:
    """Context manager that turns the first of ``signals`` into a stop request.

    While inside the ``with`` block, a signal sets :attr:`event` (a ``threading.Event``: pass it as the
    ``stop`` of the run layer and the fits, or ``event.is_set`` to the batch executors), appends its number
    to :attr:`received` and calls ``on_stop(signum)`` (to say what happens next); a SIGINT once a stop was
    requested raises ``KeyboardInterrupt`` instead. The handlers are installed only in the main thread
    (Python allows no other) and the previous ones are restored on leaving the block.
    """

    def __init__(self, on_stop: Callable[[int], None] | None = None,
                 signals: Iterable[int] = (signal.SIGINT,)) -> None:
        self.event = threading.Event()
        self.received: list[int] = []
        self._on_stop = on_stop
        self._signals = tuple(signals)
        self._previous: dict[int, Any] = {}

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        """The signal handler: first signal -> stop request, SIGINT after that -> ``KeyboardInterrupt``."""
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received.append(signum)
        self.event.set()
        if self._on_stop is not None:
            self._on_stop(signum)

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal received (130 for SIGINT, 143 for SIGTERM); None when none came."""
        return 128 + self.received[0] if self.received else None

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        while self._previous:
            sig, handler = self._previous.popitem()
            signal.signal(sig, handler)
