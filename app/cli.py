"""The ``sparsect`` command line: ``reconstruct``, ``batch``, ``app`` and ``samples``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsect import __version__, data
from sparsect.app import limits, outputs, pipeline, settings, stopping
from sparsect.app.batch.command import register
from sparsect.app.help import ITERATIONS_HELP, MEASURED_HELP, METHOD_HELP, SIMULATION_HELP, SIZE_HELP, VARIANT_HELP
from sparsect.app.measured_cli import reconstruct_scan
from sparsect.app.serve import serve
from sparsect.app.settings import InputError
from sparsect.app.tables import iterations_cell, narrow_table, status_captions
from sparsect.reconstruct import metrics
from sparsect.reconstruct.fit import PHASE_STEPS

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sparse-view CT reconstruction: simulate a sparse scan of a slice and reconstruct it.\n\n"
                       + data.errors.SUPPORTED)
console = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = stopping.EXIT_INTERRUPTED  # 128 + SIGINT, as ``sparsect batch``


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sparsect {__version__}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    warnings.showwarning = _show_warning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """A warning (e.g. a network fit rolled back) as one ``warning:`` line on stderr, without the source line."""
    console.print(f"[yellow]warning:[/] {message}", highlight=False)


def _known_errors() -> tuple[type[BaseException], ...]:
    return (data.DicomError, InputError, ValueError, FileNotFoundError, NotADirectoryError)


@cli.command()
def samples() -> None:
    """List the bundled samples (usable wherever an INPUT is expected)."""
    for name, description in data.samples().items():
        typer.echo(f"{name:14s} {description}")


@cli.command()
def reconstruct(
    input: Annotated[str | None, typer.Argument(help="DICOM file, folder or .zip archive of CT images, or a sample "
                                                      "name (see `sparsect samples`).", show_default=False)] = None,
    views: Annotated[int | None, typer.Option(help="Number of evenly spaced views over the arc (default 60); with "
                                                   "--scan, measured views kept (default all).", show_default=False)
                     ] = None,
    method: Annotated[list[str], typer.Option("--method", "-m", help=METHOD_HELP)] = ["fbp"],  # noqa: B006
    iterations: Annotated[int | None, typer.Option(help=ITERATIONS_HELP, show_default=False)] = None,
    preset: Annotated[str, typer.Option(help="Network preset: preview, paper or quality.")] = "preview",
    variant: Annotated[list[str] | None, typer.Option(help=VARIANT_HELP, show_default=False)] = None,
    photons: Annotated[float | None, typer.Option(help="Incident photons per ray (low-dose noise); off by default.")
                       ] = None,
    size: Annotated[int | None, typer.Option(help=SIZE_HELP, show_default=False)] = None,
    beam: Annotated[str, typer.Option(help="Beam geometry: parallel (half turn) or fan (flat detector, full turn).")
                    ] = "parallel",
    source_distance_mm: Annotated[float | None, typer.Option(
        help="Fan beam: source to rotation centre in mm (default: twice the image diagonal).", show_default=False)
                                  ] = None,
    detector_distance_mm: Annotated[float | None, typer.Option(
        help="Fan beam: rotation centre to detector in mm (default: one image diagonal).", show_default=False)
                                    ] = None,
    simulation: Annotated[str, typer.Option(help=SIMULATION_HELP)] = "honest",
    slice_index: Annotated[int | None, typer.Option("--slice", help="Slice index in a series (default: middle).")
                           ] = None,
    series: Annotated[str | None, typer.Option(
        "--series", help="SeriesInstanceUID of the series to use when INPUT holds several (the error lists them).",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed for the noise and the networks.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Folder for the PNG, NPZ, derived DICOM and metrics.")] = None,
    anonymize: Annotated[bool, typer.Option(
        help="De-identify the derived DICOM in --out (PS3.15 basic profile; one pseudonymous patient and study "
             "for all methods).")] = False,
    window: Annotated[str, typer.Option(help="Display window of the PNG: full, brain, soft_tissue, lung, bone...")
                      ] = "full",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per method, one per line.")] = False,
    scan: Annotated[str | None, typer.Option(help=MEASURED_HELP["scan"], show_default=False)] = None,
    geometry: Annotated[str | None, typer.Option(help=MEASURED_HELP["geometry"], show_default=False)] = None,
    center: Annotated[str | None, typer.Option(help=MEASURED_HELP["center"], show_default=False)] = None,
    row: Annotated[int | None, typer.Option(help=MEASURED_HELP["row"], show_default=False)] = None,
    reference: Annotated[str | None, typer.Option(help=MEASURED_HELP["reference"], show_default=False)] = None,
) -> None:
    """Simulate a sparse-view scan of a CT slice, reconstruct it and score each method against the slice; or, with
    --scan FILE, reconstruct a measured scan (scores against --reference on all measured views).

    Every option is checked before any reconstruction runs. Ctrl-C stops the running method after its current
    iteration, skips the others and reports and writes what was obtained (exit status 130); a second Ctrl-C
    aborts at once without writing anything."""
    if scan is not None or input is None:
        if input is not None or scan is None:
            fail("give INPUT (a slice to simulate a scan of) or --scan FILE (a measured scan), not both"
                 if input is not None else "give INPUT or --scan FILE")
        if photons is not None or slice_index is not None:
            fail("--photons and --slice apply to simulated scans, not to --scan")
        _reconstruct_measured(scan, method, iterations, preset, variant, seed, device, geometry=geometry, views=views,
                              center=center, row=row, size=size, reference=reference, out=out, window=window,
                              as_json=as_json)
        return
    if geometry is not None or center is not None or row is not None or reference is not None:
        fail("--geometry, --center, --row and --reference apply to measured scans (--scan FILE)")
    try:
        methods = settings.parse_methods(method)
        method_settings = settings.method_settings(iterations, preset, variant or None, seed, device)
        scan_setup = settings.scan_settings(views=60 if views is None else views, photons=photons, seed=seed,
                                            geometry=beam, simulation=simulation, size=size,
                                            source_distance_mm=source_distance_mm,
                                            detector_distance_mm=detector_distance_mm)
        _check_window(window)
        if anonymize and out is None:
            raise InputError("--anonymize applies to the DICOM written to --out; give --out too")
    except _known_errors() as error:
        fail(str(error))
    _reconstruct_simulated(input, methods, method_settings, scan_setup, size=size, slice_index=slice_index,
                           series=series, out=out, window=window, anonymize=anonymize, as_json=as_json)


def _reconstruct_measured(scan: str, method: list[str], iterations: int | None, preset: str,
                          variant: list[str] | None, seed: int, device: str, *, geometry: str | None,
                          views: int | None, center: str | None, row: int | None, size: int | None,
                          reference: str | None, out: Path | None, window: str, as_json: bool) -> None:
    """``reconstruct --scan FILE``: parse the options, then :func:`reconstruct_scan`; one ``error:`` line and the
    exit status on failure or a second Ctrl-C."""
    try:
        _check_window(window)
        reconstruct_scan(scan, settings.parse_methods(method),
                         settings.method_settings(iterations, preset, variant or None, seed, device),
                         geometry=geometry, views=views, center=center, row=row, size=size, reference=reference,
                         out=out, window=window, as_json=as_json, console=console)
    except (*_known_errors(), OSError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("aborted by Ctrl-C", EXIT_INTERRUPTED)


def _reconstruct_simulated(input: str, methods: tuple[str, ...], method_settings: settings.MethodSettings,
                           scan_setup: settings.ScanSettings, *, size: int | None, slice_index: int | None,
                           series: str | None, out: Path | None, window: str, anonymize: bool, as_json: bool) -> None:
    """Load the slice, check the job fits in memory, simulate its scan, run ``methods``, print and write
    (``out``) the results; one ``error:`` line and the exit status on failure or Ctrl-C."""
    staging: outputs.Staging | None = None
    views = scan_setup.views
    try:
        try:
            ct = pipeline.load_input(input, size=size, index=slice_index, series_uid=series)
            limits.check_memory(ct.hu.shape[0], scan_setup, methods, method_settings)
            if out is not None:
                if Path(input).exists() and out.resolve() == Path(input).resolve():
                    raise InputError("--out must not be the input path; inputs are never overwritten")
                staging = outputs.Staging(out, _planned_outputs(methods))
            with stopping.GracefulStop(_say_stopping) as graceful:
                simulation, outcomes = _run_with_progress(ct, methods, scan_setup, method_settings, quiet=as_json,
                                                          stop=graceful.event)
            records = [outcome.record(views, simulation) for outcome in outcomes]
            if as_json:
                for record in records:
                    typer.echo(json.dumps(record, allow_nan=False))
            elif records:
                _print_table(records, views, simulation)
            if staging is not None and outcomes:
                written = _write_outputs(staging, ct, views, simulation, outcomes, records, window, anonymize)
                if not as_json:
                    console.print(f"wrote {len(written)} files to {out}")
        except data.AmbiguousSeriesError as error:
            fail(error.advice("with --series UID"))
            return
        except (*_known_errors(), OSError) as error:
            fail(str(error))
            return
    except KeyboardInterrupt:  # a second Ctrl-C (or one outside the run): no traceback, files written stay whole
        fail("aborted by Ctrl-C", EXIT_INTERRUPTED)
        return
    finally:
        if staging is not None:
            staging.discard()
    if graceful.received:
        _report_stop(methods, outcomes)
        raise typer.Exit(EXIT_INTERRUPTED)


def _check_window(window: str) -> None:
    try:
        metrics.window_bounds(window)
    except (KeyError, ValueError, TypeError):
        raise InputError(f"unknown --window {window!r}; choose from {', '.join(metrics.WINDOWS)}") from None


def _planned_outputs(methods: tuple[str, ...]) -> dict[str, str]:
    """What ``--out`` receives: relative path -> "file" or "folder"."""
    planned = {"comparison.png": "file", "results.npz": "file", "metrics.json": "file", "dicom": "folder",
               f"{outputs.CONSISTENCY}.png": "file", f"{outputs.UNCERTAINTY}.png": "file"}
    for name in methods:
        planned[f"{name}.png"] = "file"
        planned[f"dicom/{name}"] = "folder"
    return planned


def _say_stopping(_signum: int) -> None:
    console.print("[yellow]stopping after the current iteration; press Ctrl-C again to abort[/]", highlight=False)


def _report_stop(methods: tuple[str, ...], outcomes: list[Any]) -> None:
    """One line on stderr after a graceful stop: which method was cut short and which were not run."""
    parts = [f"{o.method} stopped after {o.reconstruction.iterations} iterations" for o in outcomes
             if o.reconstruction.stop_reason == "stopped"]
    if len(outcomes) < len(methods):
        parts.append(f"not run: {', '.join(methods[len(outcomes):])}")
    console.print(f"[yellow]interrupted:[/] {'; '.join(parts) or 'every method had finished'}", highlight=False)


def _run_with_progress(ct, methods, scan, method_settings, quiet: bool, stop=None):
    if quiet:
        return pipeline.run_methods(ct, methods, scan, method_settings, stop=stop)
    columns = (TextColumn("{task.description:8s}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, state: Any) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=state.iterations, status="")
            phase = PHASE_STEPS.get(getattr(state, "phase", "fit"), "iteration")
            progress.update(tasks[name], completed=state.iteration, total=state.iterations,
                            status=f"{phase} {state.iteration}/{state.iterations} loss {state.loss:.3e}")

        return pipeline.run_methods(ct, methods, scan, method_settings, on_progress=on_progress, stop=stop)


def results_table(records: list[dict[str, Any]], views: int) -> Table:
    """The results as a table that fits 80 columns (see :mod:`app.tables`)."""
    table = narrow_table(f"sparse-view reconstruction ({views} views) vs. the full slice",
                         ("method", "PSNR dB", "SSIM", "RMSE HU", "seconds", "iterations", "params", "device"),
                         left=("method", "device"))

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in records:
        table.add_row(r["method"], number(r["psnr"], ".2f"), number(r["ssim"], ".4f"), number(r["rmse_hu"], ".1f"),
                      f"{r['seconds']:.2f}", iterations_cell(r), str(r["parameters"]), r["device"])
    captions = status_captions(records)
    table.caption = "; ".join(captions) or None
    return table


def scores_table(records: list[dict[str, Any]], simulation: data.Simulation) -> Table:
    """The reference-range and soft-tissue scores, and which simulation made the scan (fits 80 columns)."""
    table = narrow_table("scored against the reference's own range and its soft tissue",
                         ("method", "PSNR range dB", "SSIM range", "RMSE soft tissue HU"))
    for r in records:
        table.add_row(r["method"], *("-" if r[key] is None else format(r[key], spec) for key, spec in
                                     (("psnr_range", ".2f"), ("ssim_range", ".4f"), ("rmse_soft_hu", ".1f"))))
    height, width = simulation.simulation_grid
    table.caption = (f"{simulation.label} simulation ({height}x{width} grid, {simulation.sub_rays} ray(s) per bin); "
                     "range: the reference's min..max inside the circle; soft tissue: reference at -200..200 HU")
    return table


def _print_table(records: list[dict[str, Any]], views: int, simulation: data.Simulation) -> None:
    stdout = Console()
    stdout.print(results_table(records, views))
    stdout.print(scores_table(records, simulation))


def _write_outputs(staging: outputs.Staging, ct, views: int, simulation, outcomes, records, window: str,
                   anonymize: bool = False) -> list[Path]:
    """Write every output into the staging folder, then move them into ``--out``. The derived series get
    their own SeriesNumbers (1001, 1002, ...) and, de-identified, one pseudonymous identity (one key)."""
    anonymizer = data.Anonymizer() if anonymize else False
    folder = staging.folder
    images = {"reference": simulation.reference_hu} | {o.method: o.reconstruction.image_hu for o in outcomes}
    outputs.write_png(folder / "comparison.png", outputs.comparison_image(images, window))
    trust = outputs.trust_maps({o.method: o.reconstruction for o in outcomes}, simulation.sinogram,
                               simulation.geometry, simulation.pixel_size_mm)
    outputs.write_trust_pngs(folder, trust)
    outputs.write_npz(folder / "results.npz", {
        "reference_hu": simulation.reference_hu, "slice_hu": ct.hu, "slice_spacing_mm": ct.spacing,
        "sinogram": simulation.sinogram.cpu().numpy(), "angles_rad": simulation.geometry.angles.numpy(),
        "pixel_spacing_mm": (simulation.pixel_size_mm,) * 2, "simulation": simulation.label,
        "simulation_grid": simulation.simulation_grid, "sub_rays": simulation.sub_rays,
        **{f"{o.method}_hu": o.reconstruction.image_hu for o in outcomes}, **outputs.trust_arrays(trust)})
    outputs.write_json(folder / "metrics.json", records)
    for number, o in enumerate(outcomes, start=1001):
        outputs.write_png(folder / f"{o.method}.png",
                          outputs.comparison_image({o.method: o.reconstruction.image_hu}, window))
        data.write_series(folder / "dicom" / o.method, o.reconstruction.image_hu, ct,
                          f"{o.method.upper()} {views} views", anonymize=anonymizer, series_number=number)
    return staging.commit()


@cli.command()
def app(
    port: Annotated[int, typer.Option(help="Port to serve the page on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to serve other machines.")] = "127.0.0.1",
) -> None:
    """Start the comparison page in the browser (Streamlit)."""
    serve(port=port, host=host)


def main() -> None:
    """Console-script entry point."""
    register(cli)
    cli()


if __name__ == "__main__":
    main()
