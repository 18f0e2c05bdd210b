"""The ``sparsect`` command line: ``reconstruct``, ``batch``, ``app`` and ``samples``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsect import data
from sparsect.app import outputs, pipeline, settings, stopping
from sparsect.app.batch.command import register
from sparsect.app.help import ITERATIONS_HELP, MEASURED_HELP, METHOD_HELP, VARIANT_HELP
from sparsect.app.measured_cli import reconstruct_scan
from sparsect.app.serve import serve
from sparsect.app.settings import InputError
from sparsect.reconstruct import metrics

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sparse-view CT reconstruction: simulate a sparse scan of a slice and reconstruct it.")
console = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = stopping.EXIT_INTERRUPTED  # 128 + SIGINT, as ``sparsect batch``


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _known_errors() -> tuple[type[BaseException], ...]:
    return (data.DicomError, InputError, ValueError, FileNotFoundError, NotADirectoryError)


@cli.command()
def samples() -> None:
    """List the bundled samples (usable wherever an INPUT is expected)."""
    for name, description in data.samples().items():
        typer.echo(f"{name:14s} {description}")


@cli.command()
def reconstruct(
    input: Annotated[str | None, typer.Argument(help="DICOM file, folder, or a sample name (see `sparsect samples`).",
                                                show_default=False)] = None,
    views: Annotated[int | None, typer.Option(help="Number of evenly spaced views over the arc (default 60); with "
                                                   "--scan, measured views kept (default all).", show_default=False)
                     ] = None,
    method: Annotated[list[str], typer.Option("--method", "-m", help=METHOD_HELP)] = ["fbp"],  # noqa: B006
    iterations: Annotated[int | None, typer.Option(help=ITERATIONS_HELP, show_default=False)] = None,
    preset: Annotated[str, typer.Option(help="Network preset: preview, paper or quality.")] = "preview",
    variant: Annotated[list[str] | None, typer.Option(help=VARIANT_HELP, show_default=False)] = None,
    photons: Annotated[float | None, typer.Option(help="Incident photons per ray (low-dose noise); off by default.")
                       ] = None,
    size: Annotated[int | None, typer.Option(help="Resample the slice to SIZE x SIZE first.")] = None,
    slice_index: Annotated[int | None, typer.Option("--slice", help="Slice index in a series (default: middle).")
                           ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the noise and the networks.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    out: Annotated[Path | None, typer.Option(help="Folder for the PNG, NPZ, derived DICOM and metrics.")] = None,
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
    staging: outputs.Staging | None = None
    if scan is not None or input is None:
        try:
            if input is not None or scan is None:
                raise InputError("give INPUT (a slice to simulate a scan of) or --scan FILE (a measured scan), "
                                 "not both" if input is not None else "give INPUT or --scan FILE")
            if photons is not None or slice_index is not None:
                raise InputError("--photons and --slice apply to simulated scans, not to --scan")
            _check_window(window)
            reconstruct_scan(scan, settings.parse_methods(method),
                             settings.method_settings(iterations, preset, variant or None, seed, device),
                             geometry=geometry, views=views, center=center, row=row, size=size, reference=reference,
                             out=out, window=window, as_json=as_json, console=console)
        except (*_known_errors(), OSError) as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("aborted by Ctrl-C", EXIT_INTERRUPTED)
        return
    if geometry is not None or center is not None or row is not None or reference is not None:
        fail("--geometry, --center, --row and --reference apply to measured scans (--scan FILE)")
    views = 60 if views is None else views
    try:
        try:
            methods = settings.parse_methods(method)
            method_settings = settings.method_settings(iterations, preset, variant or None, seed, device)
            scan = settings.scan_settings(views=views, photons=photons, seed=seed)
            _check_window(window)
            ct = pipeline.load_input(input, size=size, index=slice_index)
            if out is not None:
                if Path(input).exists() and out.resolve() == Path(input).resolve():
                    raise InputError("--out must not be the input path; inputs are never overwritten")
                staging = outputs.Staging(out, _planned_outputs(methods))
            with stopping.GracefulStop(_say_stopping) as graceful:
                simulation, outcomes = _run_with_progress(ct, methods, scan, method_settings, quiet=as_json,
                                                          stop=graceful.event)
            records = [outcome.record(views) for outcome in outcomes]
            if as_json:
                for record in records:
                    typer.echo(json.dumps(record, allow_nan=False))
            elif records:
                _print_table(records)
            if staging is not None and outcomes:
                written = _write_outputs(staging, ct, views, simulation, outcomes, records, window)
                if not as_json:
                    console.print(f"wrote {len(written)} files to {out}")
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
    planned = {"comparison.png": "file", "results.npz": "file", "metrics.json": "file", "dicom": "folder"}
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
            phase = "warm start" if getattr(state, "phase", "fit") == "warm_start" else "it"
            progress.update(tasks[name], completed=state.iteration, total=state.iterations,
                            status=f"{phase} {state.iteration}/{state.iterations} loss {state.loss:.3e}")

        return pipeline.run_methods(ct, methods, scan, method_settings, on_progress=on_progress, stop=stop)


def _print_table(records: list[dict[str, Any]]) -> None:
    table = Table(title="sparse-view reconstruction vs. the full slice")
    for column in ("method", "views", "PSNR dB", "SSIM", "RMSE HU", "seconds", "iterations", "parameters",
                   "device"):
        table.add_column(column, justify="left" if column in ("method", "device") else "right")

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in records:
        iterations = str(r["iterations"])
        if r["warm_start_iterations"]:
            iterations = f"{r['warm_start_iterations']}+{iterations}"
        if r["stop_reason"] == "stopped":
            iterations += "*"
        table.add_row(r["method"], str(r["views"]), number(r["psnr"], ".2f"), number(r["ssim"], ".4f"),
                      number(r["rmse_hu"], ".1f"), f"{r['seconds']:.2f}", iterations, str(r["parameters"]),
                      r["device"])
    captions = []
    if any(r["warm_start_iterations"] for r in records):
        captions.append("W+N: W warm-start steps, then N iterations")
    if any(r["stop_reason"] == "stopped" for r in records):
        captions.append("* stopped by Ctrl-C before its iteration budget")
    table.caption = "; ".join(captions) or None
    Console().print(table)


def _write_outputs(staging: outputs.Staging, ct, views: int, simulation, outcomes, records, window: str) -> list[Path]:
    """Write every output into the staging folder, then move them into ``--out``."""
    folder = staging.folder
    images = {"reference": simulation.reference_hu} | {o.method: o.reconstruction.image_hu for o in outcomes}
    outputs.write_png(folder / "comparison.png", outputs.comparison_image(images, window))
    outputs.write_npz(folder / "results.npz", {
        "reference_hu": simulation.reference_hu, "slice_hu": ct.hu, "sinogram": simulation.sinogram.cpu().numpy(),
        "angles_rad": simulation.geometry.angles.numpy(), "pixel_spacing_mm": ct.spacing,
        **{f"{o.method}_hu": o.reconstruction.image_hu for o in outcomes}})
    outputs.write_json(folder / "metrics.json", records)
    for o in outcomes:
        outputs.write_png(folder / f"{o.method}.png",
                          outputs.comparison_image({o.method: o.reconstruction.image_hu}, window))
        data.write_series(folder / "dicom" / o.method, o.reconstruction.image_hu, ct,
                          f"{o.method.upper()} {views} views")
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
