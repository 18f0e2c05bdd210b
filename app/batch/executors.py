"""Executors for ``sparsect batch``: run :func:`sparsect.app.batch.work.compute` on work units.

Every executor takes the same arguments -- an iterator of ``(unit, make_payload)``, a callback
``on_result(unit, result)`` called in the main process as each unit finishes, and ``stop()`` -- and stops
submitting new units once ``stop()`` is true (units already running are finished and reported).
Workers only compute; the main process writes every file, so results and failures are gathered the same
way whatever ran the unit.

- ``run_inline``: in this process (one worker).
- ``run_pool``: ``workers`` spawned processes; with CUDA, one process per GPU (``cuda:0``, ``cuda:1`` ...).
- ``run_ray``: Ray tasks on a running cluster (``address``) or a local one; one GPU per task when the
  cluster has GPUs, else one CPU. Ray is imported only here (extra ``sparsect[distributed]``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from sparsect.app.batch.plan import Unit
from sparsect.app.batch.work import compute

Jobs = Iterator[tuple[Unit, Callable[[], dict[str, Any]]]]
OnResult = Callable[[Unit, dict[str, Any]], None]
Stop = Callable[[], bool]
WORKER_DEVICE = "@worker"


def run_inline(jobs: Jobs, on_result: OnResult, stop: Stop) -> None:
    for unit, make_payload in jobs:
        if stop():
            return
        on_result(unit, compute(make_payload()))
        if stop():
            return


_device = "cpu"


def _init_worker(devices: Any, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    global _device
    _device = devices.get() if devices is not None else "cpu"
    torch.set_num_threads(max(1, threads))


def _compute_in_worker(payload: dict[str, Any]) -> dict[str, Any]:
    if payload["device"] == WORKER_DEVICE:
        payload = dict(payload, device=_device)
    return compute(payload)


def run_pool(jobs: Jobs, on_result: OnResult, stop: Stop, workers: int, devices: list[str] | None) -> None:
    """``workers`` processes; ``devices`` (one per worker) pins each process to its own GPU."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)

    def make_pool() -> ProcessPoolExecutor:
        queue = None
        if devices:
            queue = context.Queue()
            for device in devices:
                queue.put(device)
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(queue, threads))

    def submit(payload: dict) -> Any:
        if devices:
            payload["device"] = WORKER_DEVICE
        return pool.submit(_compute_in_worker, payload)

    pool = make_pool()
    pending: dict[Any, Unit] = {}
    exhausted = False
    try:
        while True:
            exhausted = exhausted or _submit_until(pending, workers, jobs, stop, submit)
            if not pending:
                return
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                unit = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken = True
                    result = {"ok": False, "error": "worker process died (killed, or out of memory)"}
                except Exception as error:
                    result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
                on_result(unit, result)
            if broken:
                for unit in pending.values():
                    on_result(unit, {"ok": False, "error": "worker process died (killed, or out of memory)"})
                pending.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = make_pool()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit_until(pending: dict[Any, Unit], limit: int, jobs: Jobs, stop: Stop,
                  submit: Callable[[dict], Any]) -> bool:
    """Submit work units until ``limit`` are pending or a stop is asked; True once ``jobs`` is exhausted."""
    while not stop() and len(pending) < limit:
        try:
            unit, make_payload = next(jobs)
        except StopIteration:
            return True
        pending[submit(make_payload())] = unit
    return False


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_ray(jobs: Jobs, on_result: OnResult, stop: Stop, address: str | None, device: str, workers: int,
            log: Callable[..., None]) -> None:
    """Ray tasks: ``num_gpus=1`` each when the cluster has GPUs (and device is not cpu), else ``num_cpus=1``."""
    import ray

    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
        if address:
            options["address"] = address
        elif workers:
            options["num_cpus"] = workers
        ray.init(**options)
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and device != "cpu"
        slots = gpus if use_gpu else max(1, int(resources.get("CPU", 1)))
        remote = ray.remote(compute).options(num_gpus=1 if use_gpu else 0, num_cpus=1, max_retries=0)
        log("ray.start", address=address or "local", gpus=gpus, cpus=int(resources.get("CPU", 0)),
            task_device="cuda" if use_gpu else "cpu")
        def submit(payload: dict) -> Any:
            payload["device"] = "cuda" if use_gpu else "cpu"  # the task sees only its own GPU
            return remote.remote(payload)

        pending: dict[Any, Unit] = {}
        exhausted = False
        while True:
            exhausted = exhausted or _submit_until(pending, 2 * slots, jobs, stop, submit)
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                unit = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:  # task or worker failure
                    result = {"ok": False, "error": f"ray task failed: {type(error).__name__}: {error}"}
                on_result(unit, result)
    finally:
        if started:
            ray.shutdown()
