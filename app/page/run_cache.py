"""Finished runs kept by the page's server process, so a page reload (a new session) does not lose them.

A session's results live in ``st.session_state`` and die with it; the page also puts every finished run
here (``st.cache_resource`` holds one :class:`RunCache` per server process) and offers the ones matching
the current settings back to a new session. Keys are :func:`app.page.compute.run_key` tuples: the input
(a sample name, or the content hash of the uploaded files), the scan and the method's settings, so only a
session with the same input bytes gets a run back. Memory only, bounded; nothing is written to disk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any


class LRU(OrderedDict):
    """A small least-recently-used dict (``get``/``put``) holding at most ``capacity`` entries; not thread-safe on
    its own (a session's caches are used by one script run at a time; :class:`RunCache` locks around it)."""

    def __init__(self, capacity: int = 8) -> None:
        super().__init__()
        self.capacity = int(capacity)

    def get(self, key: Any, default: Any = None) -> Any:  # type: ignore[override]
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


class RunCache:
    """Thread-safe, least-recently-used store of finished runs shared by every session of one server.

    Parameters
    ----------
    capacity : how many runs are kept (the oldest go first).
    """

    def __init__(self, capacity: int = 32) -> None:
        self._runs = LRU(capacity)
        self._jobs: list[Any] = []
        self._lock = threading.Lock()

    def put(self, key: tuple, run: Any) -> None:
        """Keep a finished run (a run stopped early is not finished and is not kept)."""
        if getattr(run, "stopped", False):
            return
        with self._lock:
            self._runs.put(key, run)

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            return self._runs.get(key)

    def find(self, keys: Iterable[tuple]) -> dict[tuple, Any]:
        """The kept runs among ``keys``, after taking in whatever watched jobs have finished."""
        self.harvest()
        with self._lock:
            return {key: self._runs.get(key) for key in keys if key in self._runs}

    def watch(self, job: Any) -> None:
        """Take in ``job``'s results when it finishes, even if the session that started it is gone."""
        with self._lock:
            self._jobs.append(job)

    def harvest(self) -> None:
        """Move the results of finished watched jobs into the cache."""
        with self._lock:
            done = [job for job in self._jobs if not job.running]
            self._jobs = [job for job in self._jobs if job.running]
        for job in done:
            for key, run in job.results.items():
                self.put(key, run)


__all__ = ["LRU", "RunCache"]
