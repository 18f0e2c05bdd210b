"""The server-wide run queue: at most ``max_runs`` runs at once, each admitted by its memory estimate against
what the running ones have reserved, first come first served.

One :class:`RunQueue` serves every session of a page server (``st.cache_resource`` holds it, see
app/page/queue_view.py). A run takes a :class:`Ticket` (:meth:`RunQueue.submit`), waits for its turn on a
``threading.Condition`` (:meth:`RunQueue.acquire`) and gives its reservation back when it ends
(:meth:`RunQueue.release`). The head of the queue is never overtaken: a big run waits for memory and the
small ones behind it wait with it, so it is not starved. A waiting run whose page stops polling
(:meth:`RunQueue.touch`) for ``grace`` seconds is dropped before it starts. Plain Python, no Streamlit: the
clock is injectable and nothing sleeps. Every change is one ``run queue:`` line on stderr, with the number of
runs running, so a server log shows the limit being kept.
"""

from __future__ import annotations

import heapq
import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sparsect.app.limits import gigabytes

#: Environment variable: the most runs at once (a positive integer); default :func:`default_max_runs`.
MAX_RUNS_ENV = "SPARSECT_MAX_RUNS"
#: Environment variable: seconds a waiting run is kept without its page polling (default :data:`GRACE_SECONDS`).
GRACE_ENV = "SPARSECT_QUEUE_GRACE"
GRACE_SECONDS = 30.0
#: Memory assumed per run when the default limit is derived from the memory budget.
RUN_SHARE_BYTES = 1_000_000_000
#: Finished runs whose durations make the start estimates.
HISTORY = 20


class RunRefused(ValueError):
    """A run that could never start: its memory estimate exceeds the whole budget."""


@dataclass
class Ticket:
    """One run's place: ``state`` is "waiting", "running", "done" or "dropped"; times are the queue's clock."""

    number: int
    need: int
    label: str
    submitted: float
    touched: float
    state: str = "waiting"
    started: float | None = None
    finished: float | None = None
    why: str = ""


@dataclass(frozen=True)
class Standing:
    """Where a ticket stands: its 1-based ``place`` among the waiting runs (None once it left the queue), the runs
    running, the seconds until its estimated start (None without a finished run to estimate from)."""

    place: int | None
    waiting: int
    running: int
    max_runs: int
    start_in: float | None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_max_runs(budget: int, cores: int | None = None) -> int:
    """Runs at once when not set: one per two cores (a run's solvers use several threads), at most one per
    :data:`RUN_SHARE_BYTES` of the budget, at least one."""
    cores = _cores() if cores is None else cores
    return max(1, min(cores // 2, int(budget // RUN_SHARE_BYTES)))


def max_runs_from_env(budget: int, environ: dict[str, str] | None = None) -> int:
    """:data:`MAX_RUNS_ENV` as a positive integer, or :func:`default_max_runs` when unset; ValueError (one line)
    for anything else."""
    value = (os.environ if environ is None else environ).get(MAX_RUNS_ENV, "").strip()
    if not value:
        return default_max_runs(budget)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_RUNS_ENV} must be a positive whole number, got {value!r}")
    return int(value)


def grace_from_env(environ: dict[str, str] | None = None) -> float:
    """:data:`GRACE_ENV` in seconds (positive), or :data:`GRACE_SECONDS`; ValueError (one line) otherwise."""
    value = (os.environ if environ is None else environ).get(GRACE_ENV, "").strip()
    try:
        grace = float(value) if value else GRACE_SECONDS
    except ValueError:
        grace = -1.0
    if not grace > 0:
        raise ValueError(f"{GRACE_ENV} must be a positive number of seconds, got {value!r}")
    return grace


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class RunQueue:
    """Thread-safe FIFO of runs with at most ``max_runs`` running and at most ``budget`` bytes reserved.

    Parameters
    ----------
    max_runs : the most runs running at once (at least 1).
    budget : bytes the running runs may reserve together (each reserves its memory estimate).
    grace : seconds a waiting run is kept without a :meth:`touch`.
    clock : seconds, monotonic (tests pass a fake one).
    log : receives one line per change (default: stderr); None for no lines.
    """

    def __init__(self, max_runs: int, budget: int, grace: float = GRACE_SECONDS,
                 clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] | None = _stderr) -> None:
        if max_runs < 1:
            raise ValueError("max_runs must be at least 1")
        self.max_runs, self.budget, self.grace = int(max_runs), int(budget), float(grace)
        self.clock, self.log = clock, log
        self._condition = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._running: list[Ticket] = []
        self._numbers = itertools.count(1)
        self._durations: deque[float] = deque(maxlen=HISTORY)
        self.most_running = 0  # the most runs that ever ran at once (what the log lines show)

    @property
    def reserved(self) -> int:
        """Bytes reserved by the running runs."""
        with self._condition:
            return sum(t.need for t in self._running)

    def submit(self, need: int, label: str = "") -> Ticket:
        """A ticket at the back of the queue (started at once when it is at the head and fits); :class:`RunRefused`
        when ``need`` bytes exceed the whole budget (it could never start)."""
        with self._condition:
            if need > self.budget:
                self._say(f"refused {label or 'a run'}: needs {gigabytes(need)}, budget {gigabytes(self.budget)}")
                raise RunRefused(f"it needs about {gigabytes(need)}; this server runs at most "
                                 f"{gigabytes(self.budget)} of reconstructions at once")
            now = self.clock()
            ticket = Ticket(next(self._numbers), int(need), label, now, now)
            self._waiting.append(ticket)
            self._say(f"queued #{ticket.number} {label} ({gigabytes(need)}) at place {len(self._waiting)}")
            self._expire()
            self._admit()
            return ticket

    def acquire(self, ticket: Ticket) -> bool:
        """Block until ``ticket`` runs (True) or was dropped or cancelled (False)."""
        with self._condition:
            self._condition.wait_for(lambda: ticket.state != "waiting")
            return ticket.state == "running"

    def release(self, ticket: Ticket) -> None:
        """End a running ticket (or withdraw a waiting one) and start whoever fits next."""
        with self._condition:
            if ticket.state == "running":
                self._running.remove(ticket)
                ticket.state, ticket.finished = "done", self.clock()
                self._durations.append(ticket.finished - (ticket.started or ticket.finished))
                self._say(f"finished #{ticket.number} after {ticket.finished - ticket.started:.1f} s")
            elif ticket.state == "waiting":
                self._drop(ticket, "cancelled")
            self._expire()
            self._admit()

    def cancel(self, ticket: Ticket) -> None:
        """Withdraw a waiting ticket (Stop pressed before it started); a running one is left to :meth:`release`."""
        with self._condition:
            if ticket.state == "waiting":
                self._drop(ticket, "cancelled")
                self._admit()

    def touch(self, ticket: Ticket) -> None:
        """The ticket's page polled: keep its place for another ``grace`` seconds (and drop abandoned ones)."""
        with self._condition:
            ticket.touched = self.clock()
            self._expire()
            self._admit()

    def expire(self) -> None:
        """Drop the waiting tickets whose page has not polled for ``grace`` seconds."""
        with self._condition:
            self._expire()
            self._admit()

    def standing(self, ticket: Ticket) -> Standing:
        """``ticket``'s place, the queue's length and running count, its estimated start."""
        with self._condition:
            place = next((i for i, t in enumerate(self._waiting, 1) if t is ticket), None)
            start_in = self._start_in(place) if place else 0.0 if ticket.state == "running" else None
            return Standing(place, len(self._waiting), len(self._running), self.max_runs, start_in)

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(f"run queue: {line} | running {len(self._running)} of at most {self.max_runs}, "
                     f"reserved {gigabytes(sum(t.need for t in self._running))} of {gigabytes(self.budget)}, "
                     f"waiting {len(self._waiting)}")

    def _drop(self, ticket: Ticket, why: str) -> None:
        self._waiting.remove(ticket)
        ticket.state, ticket.finished, ticket.why = "dropped", self.clock(), why
        self._say(f"dropped #{ticket.number} ({why})")
        self._condition.notify_all()

    def _expire(self) -> None:
        now = self.clock()
        for ticket in [t for t in self._waiting if now - t.touched > self.grace]:
            self._drop(ticket, f"its page did not poll for {self.grace:g} s")

    def _admit(self) -> None:
        """Start the head while it fits (count and memory); never skip it."""
        while self._waiting:
            head = self._waiting[0]
            if len(self._running) >= self.max_runs or sum(t.need for t in self._running) + head.need > self.budget:
                return
            self._waiting.popleft()
            head.state, head.started = "running", self.clock()
            self._running.append(head)
            self.most_running = max(self.most_running, len(self._running))
            self._say(f"started #{head.number} {head.label} after waiting {head.started - head.submitted:.1f} s")
            self._condition.notify_all()

    def _start_in(self, place: int) -> float | None:
        """Seconds until the ``place``-th waiting run starts if every run takes the recent mean duration and slots
        free in order (memory not modelled); None before any run finished."""
        if not self._durations:
            return None
        typical, now = sum(self._durations) / len(self._durations), self.clock()
        ends = [now + max(0.0, typical - (now - (t.started or now))) for t in self._running]
        ends += [now] * (self.max_runs - len(ends))
        heapq.heapify(ends)
        start = now
        for _ in range(place):
            start = heapq.heappop(ends)
            heapq.heappush(ends, start + typical)
        return start - now


__all__ = ["GRACE_ENV", "GRACE_SECONDS", "MAX_RUNS_ENV", "RunQueue", "RunRefused", "Standing", "Ticket",
           "default_max_runs", "grace_from_env", "max_runs_from_env"]
