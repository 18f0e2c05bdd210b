"""The ``sparsect`` command line: ``reconstruct``, ``batch``, ``app`` and ``samples``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsect.app import stopping
from sparsect.app.batch.command import VARIANT_HELP

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
    from sparsect import data
    from sparsect.app.pipeline import InputError

    return (data.DicomError, InputError, ValueError, FileNotFoundError, NotADirectoryError)


@cli.command()
def samples() -> None:
    """List the bundled samples (usable wherever an INPUT is expected)."""
    from sparsect import data

    for name, description in data.samples().items():
        typer.echo(f"{name:14s} {description}")


@cli.command()
def reconstruct(
    input: Annotated[str, typer.Argument(help="DICOM file, folder, or a sample name (see `sparsect samples`).")],
    views: Annotated[int, typer.Option(help="Number of evenly spaced views over the arc.")] = 60,
    method: Annotated[list[str], typer.Option(
        "--method", "-m", help="fbp, sirt, cgls, os_sart, tv, lrnn, wire, siren; repeat or comma-separate.")] = ["fbp"],  # noqa: B006
    iterations: Annotated[int | None, typer.Option(help="Iteration budget (default: per method).")] = None,
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
) -> None:
    """Simulate a sparse-view scan of a CT slice, reconstruct it and score each method against the slice.

    Ctrl-C stops the running method after its current iteration, skips the others and reports and writes
    what was obtained (exit status 130); a second Ctrl-C aborts at once without writing anything."""
    from sparsect.app import pipeline

    try:
        try:
            methods = pipeline.parse_methods(method)
            variants = pipeline.parse_variants(variant or None)
            if views < 2:
                raise pipeline.InputError(f"--views must be at least 2, got {views}")
            ct = pipeline.load_input(input, size=size, index=slice_index)
            if out is not None and Path(input).exists() and out.resolve() == Path(input).resolve():
                raise pipeline.InputError("--out must not be the input path; inputs are never overwritten")
            scan = pipeline.ScanSettings(views=views, photons=photons, seed=seed)
            settings = pipeline.MethodSettings(iterations=iterations, preset=preset, seed=seed, device=device,
                                               variant=variants)
            with stopping.GracefulStop(_say_stopping) as graceful:
                simulation, outcomes = _run_with_progress(pipeline, ct, methods, scan, settings, quiet=as_json,
                                                          stop=graceful.event)
        except _known_errors() as error:
            fail(str(error))
            return
        records = [outcome.record(views) for outcome in outcomes]
        if as_json:
            for record in records:
                typer.echo(json.dumps(record))
        elif records:
            _print_table(records)
        if out is not None and outcomes:
            written = _write_outputs(out, ct, views, simulation, outcomes, records, window)
            if not as_json:
                console.print(f"wrote {len(written)} files to {out}")
    except KeyboardInterrupt:  # a second Ctrl-C (or one outside the run): no traceback, files written stay whole
        fail("aborted by Ctrl-C", EXIT_INTERRUPTED)
        return
    if graceful.received:
        _report_stop(methods, outcomes)
        raise typer.Exit(EXIT_INTERRUPTED)


def _say_stopping(_signum: int) -> None:
    console.print("[yellow]stopping after the current iteration; press Ctrl-C again to abort[/]", highlight=False)


def _report_stop(methods: list[str], outcomes: list[Any]) -> None:
    """One line on stderr after a graceful stop: which method was cut short and which were not run."""
    parts = [f"{o.method} stopped after {o.reconstruction.iterations} iterations" for o in outcomes
             if o.reconstruction.stop_reason == "stopped"]
    if len(outcomes) < len(methods):
        parts.append(f"not run: {', '.join(methods[len(outcomes):])}")
    console.print(f"[yellow]interrupted:[/] {'; '.join(parts) or 'every method had finished'}", highlight=False)


def _run_with_progress(pipeline, ct, methods, scan, settings, quiet: bool, stop=None):
    if quiet:
        return pipeline.run_methods(ct, methods, scan, settings, stop=stop)
    columns = (TextColumn("{task.description:8s}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, state: Any) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=state.iterations, status="")
            progress.update(tasks[name], completed=state.iteration,
                            status=f"it {state.iteration}/{state.iterations} loss {state.loss:.3e}")

        return pipeline.run_methods(ct, methods, scan, settings, on_progress=on_progress, stop=stop)


def _print_table(records: list[dict[str, Any]]) -> None:
    table = Table(title="sparse-view reconstruction vs. the full slice")
    for column in ("method", "views", "PSNR dB", "SSIM", "RMSE HU", "seconds", "iterations", "parameters",
                   "device"):
        table.add_column(column, justify="left" if column in ("method", "device") else "right")
    for r in records:
        iterations = f"{r['iterations']}*" if r["stop_reason"] == "stopped" else str(r["iterations"])
        table.add_row(r["method"], str(r["views"]), f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['rmse_hu']:.1f}",
                      f"{r['seconds']:.2f}", iterations, str(r["parameters"]), r["device"])
    if any(r["stop_reason"] == "stopped" for r in records):
        table.caption = "* stopped by Ctrl-C before its iteration budget"
    Console().print(table)


def _write_outputs(out: Path, ct, views: int, simulation, outcomes, records, window: str) -> list[Path]:
    from sparsect import data
    from sparsect.app import outputs

    images = {"reference": simulation.reference_hu} | {o.method: o.reconstruction.image_hu for o in outcomes}
    written = [
        outputs.write_png(out / "comparison.png", outputs.comparison_image(images, window)),
        outputs.write_npz(out / "results.npz", {
            "reference_hu": simulation.reference_hu, "slice_hu": ct.hu, "sinogram": simulation.sinogram.cpu().numpy(),
            "angles_rad": simulation.geometry.angles.numpy(), "pixel_spacing_mm": ct.spacing,
            **{f"{o.method}_hu": o.reconstruction.image_hu for o in outcomes}}),
        outputs.write_json(out / "metrics.json", records),
    ]
    for o in outcomes:
        written.append(outputs.write_png(out / f"{o.method}.png",
                                         outputs.comparison_image({o.method: o.reconstruction.image_hu}, window)))
        written += data.write_series(out / "dicom" / o.method, o.reconstruction.image_hu, ct,
                                     f"{o.method.upper()} {views} views")
    return written


@cli.command()
def app(
    port: Annotated[int, typer.Option(help="Port to serve the page on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to serve other machines.")] = "127.0.0.1",
) -> None:
    """Start the comparison page in the browser (Streamlit)."""
    from sparsect.app.serve import serve

    sys.exit(serve(port=port, host=host))


def main() -> None:
    """Console-script entry point."""
    from sparsect.app.batch.command import register

    register(cli)
    cli()


if __name__ == "__main__":
    main()
