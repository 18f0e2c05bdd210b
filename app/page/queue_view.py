"""The page's side of the server-wide run queue (app/run_queue.py): the one :class:`RunQueue` of this server
process, each run's memory estimate, and starting a :class:`Job` through the queue with the refusal shown when
the run could never fit.

The queue is configured from the environment when the first session needs it: ``SPARSECT_MAX_RUNS`` (runs at
once; default one per two cores, at most one per GB of the budget), ``SPARSECT_AVAILABLE_MEMORY`` (the bytes
all runs may reserve together; default the machine's available memory then) and ``SPARSECT_QUEUE_GRACE``
(seconds a waiting run is kept without its page polling; default 30).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from sparsect import operators
from sparsect.app import limits, run
from sparsect.app.page.jobs import Job
from sparsect.app.run_queue import GRACE_ENV, MAX_RUNS_ENV, RunQueue, RunRefused, grace_from_env, max_runs_from_env
from sparsect.app.scans import Scan
from sparsect.app.settings import MethodSettings, ScanSettings


@st.cache_resource(show_spinner=False)
def _queue(budget_env: str | None, max_runs_env: str | None, grace_env: str | None) -> RunQueue:
    budget = limits.available_bytes("cpu")
    return RunQueue(max_runs_from_env(budget), budget, grace_from_env())


def server_queue() -> RunQueue:
    """The run queue every session of this server shares (one per configuration of the environment, so a test
    that changes it gets its own)."""
    return _queue(*(os.environ.get(name) for name in (limits.AVAILABLE_MEMORY_ENV, MAX_RUNS_ENV, GRACE_ENV)))


def measured_settings(scan: Scan) -> tuple[int, ScanSettings]:
    """(source side, scan settings) that describe a measured ``scan`` to the memory estimate: its working grid, its
    views (all measured views when a reference runs on them) and bins, no simulation."""
    side = max(scan.geometry.image_size)
    views = max(int(scan.sinogram.shape[0]), int(scan.check_sinogram.shape[0]) if scan.reference_method else 0)
    beam = "fan" if isinstance(scan.geometry, operators.FanBeam) else "parallel"
    return side, ScanSettings(views=views, det_count=int(scan.sinogram.shape[1]), beam=beam, simulation="same-grid",
                              size=side)


def _refusal(side: int, scan: ScanSettings, chosen: Mapping[str, MethodSettings], fallback: str) -> str:
    """:func:`sparsect.app.limits.memory_problem`'s line for the largest method, else ``fallback``."""
    for method, settings in chosen.items():
        problem = limits.memory_problem(side, scan, (method,), settings, views_option="Number of views",
                                        size_option="working grid")
        if problem is not None:
            return problem
    return fallback


def start(box: Any, tasks: Sequence[run.Task], scan: Scan, side: int, scan_settings: ScanSettings) -> Job | None:
    """Start a :class:`Job` of ``tasks`` on ``scan`` through the server's queue, reserving its memory estimate
    (``side``: the source slice's side, ``scan_settings``: how it was scanned); None with the reason written into
    ``box`` when the run could never fit the server's memory, or the queue is misconfigured."""
    chosen = {task.method: task.settings for task in tasks}
    try:
        queue = server_queue()
        job = Job(tasks, scan, queue, limits.run_bytes(side, scan_settings, chosen))
        return job.start()
    except RunRefused as refused:
        box.error("This run cannot start on this server: "
                  + _refusal(side, scan_settings, chosen, str(refused)).replace("this machine has", "the server has"))
    except ValueError as error:
        box.error(f"The run queue is misconfigured: {error}")
    return None


__all__ = ["measured_settings", "server_queue", "start"]
