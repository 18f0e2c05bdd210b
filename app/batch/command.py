"""``sparsect batch IN_DIR OUT_DIR``: reconstruct every CT series under a folder, restartably.

Files that are not CT inputs (not DICOM, another modality such as MR, a DICOMDIR, a scout, a duplicate) are
*skipped*: listed in ``OUT_DIR/skipped.jsonl`` (``{"kind": "skipped", "file", "reason"}`` per line) and logged,
never a failure. Real failures -- a unit that could not be computed or written, a truncated or undecodable
DICOM file, a series ``--slices`` selects nothing of -- are listed in ``OUT_DIR/failures.jsonl``.

Exit codes: 0 every unit succeeded (and, for shard 1 or unsharded runs, no input file failed); 3 some units
or input files failed (see ``failures.jsonl``); 2 the job could not start (bad options, unreadable IN_DIR, no CT
series in IN_DIR, OUT_DIR inside IN_DIR or in use by another batch, Ray missing); 130/143 stopped by
SIGINT/SIGTERM after the current unit (run the same command again to finish).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsect import __version__, data
from sparsect.app import limits, stopping
from sparsect.app.batch import eta, executors, plan, work
from sparsect.app.batch.store import OutDirBusy, Store
from sparsect.app.settings import InputError, method_settings, parse_device, parse_methods, scan_settings
from sparsect.app.tables import narrow_table
from sparsect.data.atomic import atomic_write
from sparsect.reconstruct import registry
from sparsect.reconstruct.estimate import format_duration

EXIT_OK = 0
EXIT_CANNOT_START = 2
EXIT_FAILURES = 3
EXIT_INTERRUPTED = stopping.EXIT_INTERRUPTED  # 128 + SIGINT; SIGTERM gives 143

class CannotStart(Exception):
    """The batch cannot start; the message says why."""


def _value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' ="\n\t')) else text


class Log:
    """Structured (logfmt) log lines on stderr: ``ts=... level=info event=unit.done unit=... seconds=...``."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        ts = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        parts = [f"ts={ts}", f"level={level}", f"event={event}"]
        parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
        self.console.print(" ".join(parts), markup=False, highlight=False, soft_wrap=True)


def run_batch(in_dir: str | Path, out_dir: str | Path, views: list[str] | None = None,
              methods: list[str] | None = None, preset: str = "preview", variant: list[str] | None = None,
              iterations: int | None = None, photons: float | None = None, seed: int = 0, slices: str = "all",
              device: str = "auto", anonymize: bool = False, workers: int = 0, batch_size: int = 0,
              shard: str | None = None, executor: str = "local", ray_address: str | None = None,
              dry_run: bool = False, quiet: bool = False, console: Console | None = None,
              stdout: Console | None = None, simulation: str = "honest", size: int | None = None,
              window: str = "full") -> int:
    """Run (or with ``dry_run`` list) the batch; returns the exit code (see the module docstring).

    ``variant``: the networks' fit variants as for :func:`app.settings.parse_variants` (None: the
    recommended ones). ``simulation``: "honest" or "same-grid" (see :func:`sparsect.data.simulate`).
    ``size``: reconstruct on a ``size`` x ``size`` working grid (None: each slice's own). ``window``: the
    display window of the contact sheets (a name in :data:`sparsect.reconstruct.metrics.WINDOWS`)."""
    console = console or Console(stderr=True)
    if stdout is None:
        stdout = Console()
    log = Log(console)
    try:
        with contextlib.ExitStack() as held:  # the OUT_DIR lock, released however the run ends
            return _run(Path(in_dir), Path(out_dir), views or ["60"], methods or list(registry.DEFAULT_METHODS),
                        preset, variant, iterations, photons, seed, slices, device, anonymize, workers, batch_size,
                        shard, executor, ray_address, dry_run, quiet, console, stdout, log, held, simulation,
                        size, window)
    except CannotStart as error:
        log("run.error", level="error", reason=str(error))
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        return EXIT_CANNOT_START


def _validate(in_dir: Path, out_dir: Path, views: list[str], methods: list[str], preset: str,
              variant: list[str] | None, iterations: int | None, photons: float | None, slices: str, device: str,
              workers: int, batch_size: int, shard: str | None, executor: str, simulation: str,
              size: int | None = None, window: str = "full") -> tuple[Any, tuple[int, int], str]:
    try:
        plan.check_size_and_window(size, window)
        if executor not in ("local", "ray"):
            raise InputError(f"--executor must be local or ray, got {executor!r}")
        if executor == "ray" and not executors.ray_available():
            raise CannotStart("--executor ray needs Ray: pip install 'sparsect[distributed]'")
        if executor == "ray":  # Ray workers pick their own GPU: only the name is checked here
            if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
                raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
            resolved = device
        else:
            resolved = parse_device(device)
        methods_run = method_settings(iterations, preset, variant, device="cpu")
        parsed_views = tuple(plan.parse_views(views))
        for count in parsed_views:
            scan_settings(views=count, photons=photons, simulation=simulation)
        batch_settings = plan.BatchSettings(
            views=parsed_views, methods=parse_methods(methods), slices=plan.check_slices(slices),
            preset=methods_run.preset, variant=methods_run.variant, iterations=methods_run.iterations,
            photons=photons, simulation=simulation, size=size, window=window)
        k_n = plan.parse_shard(shard)
        if workers < 0 or batch_size < 0:
            raise InputError("--workers and --batch-size must be >= 0 (0: automatic)")
    except (plan.PlanError, InputError) as error:
        raise CannotStart(str(error)) from None
    if not in_dir.exists():
        raise CannotStart(f"IN_DIR {str(in_dir)!r} does not exist")
    if not in_dir.is_dir():
        raise CannotStart(f"IN_DIR {str(in_dir)!r} is not a folder")
    try:
        next(in_dir.iterdir(), None)
    except OSError as error:
        raise CannotStart(f"cannot read IN_DIR {str(in_dir)!r}: {error.strerror or error}") from None
    src, dst = in_dir.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise CannotStart("OUT_DIR must not be IN_DIR or inside it (outputs would be read as inputs)")
    if dst in src.parents:
        raise CannotStart("IN_DIR must not be inside OUT_DIR")
    return batch_settings, k_n, resolved


@dataclasses.dataclass
class _Job:
    """A planned batch: the units of this shard, which of them are still to do, and where they go."""

    settings: plan.BatchSettings
    scan: Any
    units: list[plan.Unit]
    mine: list[plan.Unit]
    todo: list[plan.Unit]
    input_failures: list[dict[str, str]]
    store: Store
    fingerprints: dict[str, str]
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)  # files that are not CT inputs


def _plan(in_dir: Path, out_dir: Path, settings: plan.BatchSettings, k: int, n: int, device: str, batch_size: int,
          log: Log) -> _Job:
    """Scan IN_DIR, plan every unit (refusing a job that would not fit in memory on ``device`` with
    ``batch_size`` slices per call), keep shard ``k`` of ``n`` and find the units still to do."""
    try:
        scan = data.scan(in_dir)
    except (data.DicomError, OSError) as error:
        raise CannotStart(f"cannot scan IN_DIR: {error}") from None
    if not scan.series and not scan.skipped:
        raise CannotStart(f"no files found under IN_DIR {str(in_dir)!r}")
    skipped, input_failures = plan.split_inputs(scan.skipped)
    if not scan.series:
        raise CannotStart(f"no CT series found in IN_DIR {str(in_dir)!r} ({_count(len(scan.skipped), 'file')} "
                          f"passed over: {_reasons(skipped + input_failures)})")
    units, problems = plan.plan(scan.series, in_dir, settings)
    if (too_large := limits.batch_problem(scan.series, units, settings, device, batch_size)) is not None:
        raise CannotStart(too_large)
    input_failures += [{"kind": "input", "file": name, "reason": reason} for name, reason in problems]
    mine = plan.shard(units, k, n)
    store = Store(out_dir, in_dir, settings)
    fingerprints = {u.id: store.fingerprint(u, scan.series[u.series_index]) for u in mine}
    todo = [u for u in mine if not store.is_done(u, fingerprints[u.id])]
    log("run.plan", series=len(scan.series), skipped_inputs=len(skipped), failed_inputs=len(input_failures),
        units=len(units), shard_units=len(mine), already_done=len(mine) - len(todo), todo=len(todo))
    return _Job(settings, scan, units, mine, todo, input_failures, store, fingerprints, skipped)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _reasons(records: list[dict[str, str]], most: int = 3) -> str:
    """The first ``most`` files' names and reasons, on one line."""
    named = "; ".join(f"{Path(r['file']).name}: {r['reason']}" for r in records[:most])
    return named + (f"; and {len(records) - most} more" if len(records) > most else "")


def _list_units(job: _Job, stdout: Console, log: Log) -> None:
    """``--dry-run``: one tab-separated line per unit of this shard (todo/done), for scripts."""
    pending = {u.id for u in job.todo}
    for unit in job.mine:
        status = "todo" if unit.id in pending else "done"
        stdout.file.write(f"{status}\t{unit.out_rel}\t{unit.series_uid}\t{_describe(unit)}\t"
                          f"views={unit.views}\tmethod={unit.method}\n")
    stdout.file.flush()
    _log_skipped(job, log)


def _log_skipped(job: _Job, log: Log) -> None:
    for record in job.skipped:
        log("input.skipped", file=record["file"], reason=record["reason"])
    for failure in job.input_failures:
        log("input.failed", level="warning", file=failure["file"], reason=failure["reason"])


def _write_skipped(job: _Job, out_dir: Path) -> None:
    """``skipped.jsonl``: one line per input file that is not a CT input (the same for every shard)."""
    lines = "".join(json.dumps(record) + "\n" for record in job.skipped)
    atomic_write(out_dir / "skipped.jsonl", lines.encode(), temp_dir=job.store.state / "tmp")


def _open_out_dir(job: _Job, out_dir: Path, k: int, n: int, held: contextlib.ExitStack) -> None:
    """Create OUT_DIR, take its lock (released by ``held``) and prepare the units' markers."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        job.store.acquire(k, n)
        held.callback(job.store.release)
        job.store.prepare(job.mine)
    except OutDirBusy as error:
        raise CannotStart(str(error)) from None
    except OSError as error:
        raise CannotStart(f"cannot write OUT_DIR {str(out_dir)!r}: {error.strerror or error}") from None


class _Recorder:
    """Commits each finished unit to the store (or records its failure), logs it and advances the bar."""

    def __init__(self, job: _Job, log: Log, progress: Progress, extra: dict[str, Any],
                 estimated: dict[str, float] | None = None) -> None:
        self.job, self.log, self.progress, self.extra, self.estimated = job, log, progress, extra, estimated
        self.task = progress.add_task("batch", total=len(job.todo), estimate_done=0.0, elapsed_at_done=0.0,
                                      estimate=None if estimated is None else sum(estimated.values()))
        self.completed = 0
        self.failed: list[str] = []

    def __call__(self, unit: Any, result: dict[str, Any]) -> None:
        series = self.job.scan.series[unit.series_index]
        for message in result.get("warnings", ()):
            self.log("unit.warning", level="warning", unit=unit.out_rel, message=message)
        if result.get("ok"):
            try:
                rows = self.job.store.commit(unit, series, result, self.job.fingerprints[unit.id])
                self.completed += 1
                scored = [r["psnr"] for r in rows if r["psnr"] is not None]  # None: equal to the reference
                mean = sum(scored) / len(scored) if scored else float("inf")
                self.log("unit.done", unit=unit.out_rel, series=unit.series_uid, slices=len(rows),
                         psnr=f"{mean:.2f}", seconds=f"{sum(r['seconds'] for r in rows):.2f}",
                         device=rows[0]["device"], batch=result.get("batch_size"))
            except Exception as error:  # e.g. disk full while writing: record it, go on
                result = {"ok": False, "error": f"writing outputs failed: {type(error).__name__}: {error}"}
        if not result.get("ok"):
            self.failed.append(unit.id)
            self.job.store.fail(unit, series.sources[0], result["error"])
            self.log("unit.failed", level="error", unit=unit.out_rel, file=series.sources[0], reason=result["error"])
        self.job.store.rebuild(self.job.input_failures, self.extra)
        self.progress.advance(self.task)
        if self.estimated is not None:  # the time left (eta.TimeLeftColumn) learns from this unit's time
            task = next(t for t in self.progress.tasks if t.id == self.task)
            self.progress.update(self.task, estimate_done=task.fields["estimate_done"] + self.estimated[unit.id],
                                 elapsed_at_done=task.elapsed or 0.0)


def _execute(job: _Job, recorder: _Recorder, should_stop: Any, executor: str, device: str, workers: int,
             batch_size: int, ray_address: str | None, log: Log) -> None:
    """Run the units still to do: on Ray, in a process pool (several workers or GPUs) or in this process."""
    def jobs():
        for unit in job.todo:
            series = job.scan.series[unit.series_index]
            yield unit, (lambda u=unit, s=series: work.make_payload(u, s, job.settings, device, batch_size))

    if executor == "ray":
        executors.run_ray(jobs(), recorder, should_stop, ray_address, device, workers, log)
        return
    devices = None
    count = workers or 1
    if device == "cuda" and not workers:  # auto: one process per GPU
        count = torch.cuda.device_count()
    if device == "cuda" and count > 1:
        devices = [f"cuda:{i % torch.cuda.device_count()}" for i in range(count)]
    if count > 1 and len(job.todo) > 1:
        executors.run_pool(jobs(), recorder, should_stop, count, devices)
    else:
        executors.run_inline(jobs(), recorder, should_stop)


def _run(in_dir: Path, out_dir: Path, views: list[str], methods: list[str], preset: str,
         variant: list[str] | None, iterations: int | None, photons: float | None, seed: int, slices: str,
         device: str, anonymize: bool, workers: int, batch_size: int, shard: str | None, executor: str,
         ray_address: str | None, dry_run: bool, quiet: bool, console: Console, stdout: Console, log: Log,
         held: contextlib.ExitStack, simulation: str, size: int | None, window: str) -> int:
    settings, (k, n), device = _validate(in_dir, out_dir, views, methods, preset, variant, iterations, photons,
                                         slices, device, workers, batch_size, shard, executor, simulation, size,
                                         window)
    settings = dataclasses.replace(settings, seed=seed, anonymize=anonymize)
    started = time.perf_counter()
    log("run.start", in_dir=str(in_dir), out_dir=str(out_dir), views=",".join(map(str, settings.views)),
        methods=",".join(settings.methods), variant=",".join(settings.variant), simulation=settings.simulation,
        size=settings.size, window=settings.window, slices=settings.slices, shard=f"{k}/{n}", executor=executor,
        device=device, version=__version__)
    job = _plan(in_dir, out_dir, settings, k, n, device, batch_size, log)
    if dry_run:
        _list_units(job, stdout, log)
        return EXIT_OK
    _open_out_dir(job, out_dir, k, n, held)
    _write_skipped(job, out_dir)
    _log_skipped(job, log)

    graceful = stopping.GracefulStop(
        lambda signum: log("run.stopping", level="warning", signal=signal.Signals(signum).name,
                           detail="finishing the current unit; run the same command again to resume"),
        signals=(signal.SIGINT, signal.SIGTERM))
    extra = {"version": __version__, "in_dir": str(in_dir), "settings": dataclasses.asdict(settings),
             "skipped": len(job.skipped)}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("units"),
               TimeElapsedColumn(), TextColumn("ETA"), eta.TimeLeftColumn())
    progress = Progress(*columns, console=console, disable=quiet, transient=False)
    recorder = _Recorder(job, log, progress, extra, _estimate(job, device, log))
    interrupted = False
    try:
        with graceful, progress:
            _execute(job, recorder, graceful.event.is_set, executor, device, workers, batch_size, ray_address, log)
    except KeyboardInterrupt:
        interrupted = True

    summary = job.store.rebuild(job.input_failures, dict(extra, seconds=round(time.perf_counter() - started, 2)))
    done_before, failed = len(job.mine) - len(job.todo), len(recorder.failed)
    if not quiet:
        stdout.print(summary_table(summary))
        stdout.print(summary_line(out_dir, recorder.completed + done_before, done_before,
                                  failed + len(job.input_failures), len(job.skipped)), highlight=False, soft_wrap=True)
    if interrupted or graceful.received:
        code = graceful.exit_code or EXIT_INTERRUPTED
        log("run.interrupted", level="warning", done=recorder.completed,
            remaining=len(job.todo) - recorder.completed - failed, exit_code=code)
        return code
    counted_inputs = job.input_failures if k == 1 else []
    code = EXIT_FAILURES if (recorder.failed or counted_inputs) else EXIT_OK
    log("run.end", done=recorder.completed, already_done=done_before, failed=failed,
        failed_inputs=len(job.input_failures), skipped_inputs=len(job.skipped),
        seconds=f"{time.perf_counter() - started:.1f}", exit_code=code)
    return code


def _estimate(job: _Job, device: str, log: Log) -> dict[str, float] | None:
    """Each unit's estimated seconds on this machine (:func:`eta.unit_estimates`), logged in total as
    ``run.estimate``; None when they cannot be estimated (the batch runs all the same)."""
    try:
        estimated, target = eta.unit_estimates(job.todo, job.scan.series, job.settings, device)
    except Exception as error:  # noqa: BLE001 - e.g. a device that cannot be timed: the batch runs all the same
        log("run.estimate", level="warning", reason=f"no time estimate: {type(error).__name__}: {error}")
        return None
    total = sum(estimated.values())
    log("run.estimate", units=len(job.todo), seconds=f"{total:.0f}", estimate=format_duration(total), device=target)
    return estimated


def _describe(unit: Any) -> str:
    return f"slices={unit.slices[0]}-{unit.slices[-1]}" if len(unit.slices) > 1 else f"slices={unit.slices[0]}"


def summary_table(summary: dict[str, Any]) -> Table:
    """Mean ± sd per method and view count, as a table that fits 80 columns (see :mod:`app.tables`)."""
    table = narrow_table("sparse-view batch: mean ± sd per method and view count",
                         ("method", "views", "slices", "PSNR dB", "SSIM", "RMSE HU", "s/slice"))
    for g in summary["groups"]:
        table.add_row(g["method"], str(g["views"]), str(g["slices"]),
                      f"{g['psnr']['mean']:.2f}±{g['psnr']['sd']:.2f}",
                      f"{g['ssim']['mean']:.4f}±{g['ssim']['sd']:.4f}",
                      f"{g['rmse_hu']['mean']:.1f}±{g['rmse_hu']['sd']:.1f}", f"{g['seconds']['mean']:.2f}")
    networks = [g for g in summary["groups"] if g.get("fit") and g["fit"] != registry.label(g["method"])]
    captions = list(dict.fromkeys(f"{g['method']}: {g['fit']}" for g in networks))
    simulation = summary.get("settings", {}).get("simulation")
    if simulation is not None:
        captions.append(f"{data.SIMULATIONS[simulation]} simulation; more scores in summary.json and metrics.csv")
    table.caption = "; ".join(captions) or None
    return table


def summary_line(out_dir: Path, done: int, already: int, failed: int, skipped: int) -> str:
    """The run in one line: ``3 units done, 0 failed, 2 files skipped (not CT); results in OUT/metrics.csv``.
    ``done`` counts the units done in this run and before (``already``); ``failed`` the failed units and
    input files (the lines of failures.jsonl this run wrote); ``skipped`` the files that are not CT inputs."""
    line = f"{_count(done, 'unit')} done" + (f" ({already} already)" if already else "") + f", {failed} failed"
    if skipped:
        line += f", {_count(skipped, 'file')} skipped (not CT)"
    line += f"; results in {out_dir / 'metrics.csv'}"
    if failed:
        line += f", failures in {out_dir / 'failures.jsonl'}"
    if skipped:
        line += f", skipped files in {out_dir / 'skipped.jsonl'}"
    return line
