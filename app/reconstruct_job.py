"""Runs one checked ``sparsect reconstruct`` request (:class:`sparsect.app.cli.Request`): load the input,
simulate its scan, run the methods with a progress bar per phase, print the records and write ``--out``.

Imported by the command only when a run starts, so that ``sparsect --help`` does not load torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sparsect import data, operators
from sparsect.app import display, estimates, limits, measured_scan, outputs, run, run_outputs, scans, stopping
from sparsect.app.scans import Scan
from sparsect.app.settings import InputError
from sparsect.app.tables import results_table, scan_title, scores_table
from sparsect.app.terminal import EXIT_INTERRUPTED, EXIT_METHOD_FAILED, console, fail, known_errors
from sparsect.reconstruct.fit import PHASE_STEPS

if TYPE_CHECKING:
    from sparsect.app.cli import Request

log = logging.getLogger("sparsect.reconstruct_job")


def _load(request: Request) -> tuple[Scan | None, data.CTSlice | None]:
    """The scan to reconstruct and, for a simulated one, the slice it is made from; everything checked first
    (the memory a simulated job needs, the output folder) and nothing simulated yet for a simulated scan."""
    if request.measured is not None:
        m = request.measured
        if m["views"] is not None and m["views"] < 2:
            raise InputError(f"--views must be at least 2, got {m['views']}")
        if request.out is not None and request.out.resolve() == Path(m["path"]).resolve():
            raise InputError("--out must not be the scan path; inputs are never overwritten")
        prepared = measured_scan.prepare(m["path"], m["geometry"], views=m["views"], center=m["center"], row=m["row"],
                                         size=m["size"], reference=measured_scan.parse_reference(m["reference"]))
        if prepared.center_warning:
            console.print(f"[yellow]warning:[/] {prepared.center_warning}", highlight=False)
        window = display.choose_window(None, request.window)
        return measured_scan.measured_scan(prepared, scans.source(None, m["path"], window.label)), None
    ct = scans.load_input(request.input, size=request.scan_settings.size, index=request.slice_index,
                          series_uid=request.series)
    limits.check_memory(ct.hu.shape[0], request.scan_settings, request.methods, request.method_settings)
    if request.out is not None and Path(request.input).exists() and \
            request.out.resolve() == Path(request.input).resolve():
        raise InputError("--out must not be the input path; inputs are never overwritten")
    return None, ct


def _print_estimates(request: Request, scan: Scan | None, ct: data.CTSlice | None) -> None:
    """One line on stderr before the run: each method's estimated time on this machine (nothing when it cannot be
    estimated: an estimate never stops a run)."""
    if scan is not None:
        shape, views = scan.image_size, scan.views
    else:
        size = request.scan_settings.size
        shape, views = (ct.hu.shape if size is None else (size, size)), request.scan_settings.views
    try:
        seconds = estimates.seconds_by_method({m: request.method_settings for m in request.methods}, shape, views)
    except Exception:  # noqa: BLE001 - e.g. an unwritable cache or a device that cannot be timed
        log.debug("no time estimate", exc_info=True)
        return
    console.print(estimates.estimate_line(seconds), highlight=False, markup=False)


def run_request(request: Request) -> None:
    """Load, simulate (a slice), run the methods with progress, print and write (``--out``) the results; one
    ``error:`` line and the exit status on failure or Ctrl-C."""
    staging: outputs.Staging | None = None
    result = None
    try:
        try:
            scan, ct = _load(request)
            if request.out is not None:
                staging = outputs.Staging(request.out, request.force)
            _print_estimates(request, scan, ct)  # once every input is checked: bad input gets one line
            with stopping.GracefulStop(_say_stopping) as graceful:
                scan, result = _run_with_progress(request, scan, ct, stop=graceful.event)
            if scan is not None:
                _report(request, scan, ct, result, staging)
        except data.AmbiguousSeriesError as error:
            fail(error.advice("with --series UID"))
        except (*known_errors(), OSError) as error:
            fail(str(error))
    except KeyboardInterrupt:  # a second Ctrl-C (or one outside the run): no traceback, files written stay whole
        fail("aborted by Ctrl-C", EXIT_INTERRUPTED)
    finally:
        if staging is not None:
            staging.discard()
    if graceful.received:
        _report_stop(request.methods, result.outcomes)
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.failed or result.reference_error:
        fail("; ".join([o.error for o in result.failed] + ([result.reference_error] if result.reference_error
                                                            else [])), EXIT_METHOD_FAILED)


def _report(request: Request, scan: Scan, ct: data.CTSlice | None, result: run.RunResult,
            staging: outputs.Staging | None) -> None:
    """Print the records (a table, or ``--json`` lines) and write ``--out``."""
    records = [o.record() for o in result.outcomes if o.ok]
    if request.as_json:
        for record in records:
            typer.echo(json.dumps(record, allow_nan=False))
    elif records:
        stdout = Console()
        stdout.print(results_table(records, scan_title(scan, result)))
        stdout.print(scores_table(records))
    if staging is not None and records:
        written = run_outputs.write(staging, scan, ct, result, records, display.choose_window(ct, request.window),
                                    request.anonymize, request.same_study)
        if not request.as_json:
            console.print(f"wrote {len(written)} files to {request.out}")


def _say_stopping(_signum: int) -> None:
    console.print("[yellow]stopping after the current iteration; press Ctrl-C again to abort[/]", highlight=False)


def _report_stop(methods: tuple[str, ...], outcomes: list[run.Outcome]) -> None:
    """One line on stderr after a graceful stop: which method was cut short and which were not run."""
    parts = [f"{o.method} stopped after {o.reconstruction.iterations} iterations" for o in outcomes if o.stopped]
    if len(outcomes) < len(methods):
        parts.append(f"not run: {', '.join(methods[len(outcomes):])}")
    console.print(f"[yellow]interrupted:[/] {'; '.join(parts) or 'every method had finished'}", highlight=False)


class _ProgressBars(run.RunListener):
    """One rich progress bar per method (and a measured scan's reference) while it runs."""

    def __init__(self, display: Progress) -> None:
        self.bars: dict[str, Any] = {}
        self.display = display

    def started(self, name: str, iterations: int | None) -> None:
        self.bars[name] = self.display.add_task(name, total=iterations, status="")

    def phase(self, name: str, state: operators.PhaseProgress) -> None:
        self.display.update(self.bars[name], completed=state.done, total=state.total,
                            status=f"{state.phase} {state.done}/{state.total}")

    def progress(self, name: str, state: Any) -> None:
        phase = PHASE_STEPS.get(getattr(state, "phase", "fit"), "iteration")
        self.display.update(self.bars[name], completed=state.iteration, total=state.iterations,
                             status=f"{phase} {state.iteration}/{state.iterations} loss {state.loss:.3e}")

    def simulation(self, state: operators.PhaseProgress) -> None:
        """The simulation's progress, on a bar of its own."""
        if "simulate" not in self.bars:
            self.started("simulate", state.total)
        self.phase("simulate", state)


def _simulate(request: Request, ct: data.CTSlice, bars: _ProgressBars | None, stop: Any) -> Scan | None:
    """The simulated scan of ``ct``, or None when a stop request came during the simulation."""
    origin = scans.source(ct, request.input, display.choose_window(ct, request.window).label, request.anonymize)
    try:
        return scans.simulate(ct, request.scan_settings, origin, bars.simulation if bars else None, stop)
    except data.SimulationStopped:
        return None


def _run_with_progress(request: Request, scan: Scan | None, ct: data.CTSlice | None, stop: Any = None
                       ) -> tuple[Scan | None, run.RunResult]:
    """Simulate (a slice's scan) and run the methods, with a progress bar per phase unless ``--json``; (None, an
    empty result) when stopped during the simulation."""
    tasks = run.tasks_for(request.methods, request.method_settings)
    columns = (TextColumn("{task.description:9s}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    with contextlib.nullcontext() if request.as_json else Progress(*columns, console=console,
                                                                      transient=True) as progress:
        bars = _ProgressBars(progress) if progress is not None else None
        scan = scan if scan is not None else _simulate(request, ct, bars, stop)
        if scan is None:
            return None, run.RunResult(None, [])
        return scan, run.run_tasks(scan, tasks, bars, stop=stop)
