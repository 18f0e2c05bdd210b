"""The ``sparsect`` command line: ``reconstruct``, ``batch``, ``app`` and ``samples``.

``reconstruct`` is a thin adapter over the run layer (:mod:`sparsect.app.run`): its options become a scan
(:mod:`sparsect.app.scans`, :mod:`sparsect.app.measured_scan`) and tasks; its tables, ``--json`` lines and ``--out``
files are made from the records (:mod:`sparsect.app.records`, :mod:`sparsect.app.run_outputs`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sparsect import __version__, data
from sparsect.app import display, settings
from sparsect.app.batch.cli import register
from sparsect.app.help import (
    ITERATIONS_HELP,
    MEASURED_HELP,
    METHOD_HELP,
    SIMULATION_HELP,
    SIZE_HELP,
    VARIANT_HELP,
    Command,
    flag,
)
from sparsect.app.settings import InputError
from sparsect.app.terminal import console, fail, known_errors, show_warning
from sparsect.reconstruct import registry

cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sparse-view CT reconstruction: simulate a sparse scan of a slice and reconstruct it.\n\n"
                       + data.errors.SUPPORTED)

def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sparsect {__version__}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    warnings.showwarning = show_warning


@cli.command()
def samples() -> None:
    """List the bundled samples (usable wherever an INPUT is expected)."""
    for name, description in data.samples().items():
        typer.echo(f"{name:14s} {description}")


InputArg = Annotated[str | None, typer.Argument(
    help="DICOM file, folder or .zip of CT images, or a sample (`sparsect samples`).", metavar="INPUT",
    show_default=False)]
ViewsOpt = Annotated[int | None, typer.Option(
    help="Views over the arc (default 60); with --scan, measured views kept (default all).", metavar="N",
    show_default=False)]
MethodOpt = Annotated[list[str], typer.Option("--method", "-m", help=METHOD_HELP, metavar="NAME")]
IterationsOpt = Annotated[int | None, typer.Option(
    help="Main-loop iterations of every iterative method (default: each method's own).", metavar="N",
    show_default=False)]
PresetOpt = Annotated[str, typer.Option(help="Network preset: preview, paper or quality.", metavar="NAME")]
VariantOpt = Annotated[list[str] | None, typer.Option(
    help="Network fit variants, repeat or comma-separate (default: recommended; see below).", metavar="NAME",
    show_default=False)]
PhotonsOpt = Annotated[float | None, typer.Option(help="Incident photons per ray (low-dose noise; default none).",
                                                  metavar="N", show_default=False)]
SizeOpt = Annotated[int | None, typer.Option(help="Working grid N x N (default: the slice's own; see below).",
                                             metavar="N", show_default=False)]
BeamOpt = Annotated[str, typer.Option(help="parallel (half turn) or fan (flat detector, full turn).", metavar="NAME")]
SourceDistanceOpt = Annotated[float | None, typer.Option(
    help="Fan beam: source to centre (default: 2 image diagonals).", metavar="MM", show_default=False)]
DetectorDistanceOpt = Annotated[float | None, typer.Option(
    help="Fan beam: centre to detector (default: 1 image diagonal).", metavar="MM", show_default=False)]
SimulationOpt = Annotated[str, typer.Option(help="honest or same-grid (the inverse crime; see below).", metavar="NAME")]
SliceOpt = Annotated[int | None, typer.Option("--slice", help="Slice index in a series (default: middle).",
                                              metavar="N", show_default=False)]
SeriesOpt = Annotated[str | None, typer.Option(
    "--series", help="SeriesInstanceUID when INPUT holds several (the error lists them).", metavar="UID",
    show_default=False)]
SeedOpt = Annotated[int, typer.Option(help="Seed for the noise and the networks.", metavar="N")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", metavar="NAME")]
OutOpt = Annotated[Path | None, typer.Option(
    help="The run's folder for PNG, NPZ, DICOM and metrics: new or empty, or an earlier run's with --force.",
    metavar="DIR", show_default=False)]
ForceOpt = Annotated[bool, flag("--force", "Replace an earlier run's --out folder whole.")]
AnonymizeOpt = Annotated[bool, flag("--anonymize", "De-identify the derived DICOM (PS3.15 basic profile).")]
SameStudyOpt = Annotated[bool, flag("--same-study", "Put the derived DICOM into the source's study (default: a "
                                                    "research study of its own).")]
WindowOpt = Annotated[str, typer.Option(
    help="PNG display window: auto (the DICOM's own, a head's brain window, else soft tissue), brain, soft_tissue, "
         "lung, bone, full.", metavar="NAME")]
JsonOpt = Annotated[bool, flag("--json", "Print one JSON record per method, one per line.")]


def _measured_option(name: str, metavar: str) -> Any:
    return Annotated[str | None, typer.Option(help=MEASURED_HELP[name], show_default=False, metavar=metavar)]


ScanOpt, GeometryOpt, CenterOpt, ReferenceOpt = (_measured_option(n, m) for n, m in (
    ("scan", "FILE"), ("geometry", "FILE"), ("center", "BINS"), ("reference", "NAME")))
RowOpt = Annotated[int | None, typer.Option(help=MEASURED_HELP["row"], show_default=False, metavar="N")]
#: What ``sparsect reconstruct --help`` says below the options: what would not fit in 80 columns beside them.
RECONSTRUCT_EPILOG = "\n\n".join((f"--iterations: {ITERATIONS_HELP}", f"--variant: {VARIANT_HELP}",
                                   f"--size: {SIZE_HELP}", f"--simulation: {SIMULATION_HELP}"))


@dataclass(frozen=True)
class Request:
    """A checked ``sparsect reconstruct`` request: what to load, which methods with which settings, what to
    write (the scan itself is built by :func:`_load`)."""

    input: str | None
    methods: tuple[str, ...]
    method_settings: settings.MethodSettings
    scan_settings: settings.ScanSettings | None
    measured: dict[str, Any] | None
    slice_index: int | None
    series: str | None
    out: Path | None
    force: bool
    window: str
    anonymize: bool
    as_json: bool
    same_study: bool = False


@cli.command(cls=Command, epilog=RECONSTRUCT_EPILOG)
def reconstruct(
    input: InputArg = None, views: ViewsOpt = None, method: MethodOpt = list(registry.DEFAULT_METHODS),  # noqa: B006, B008
    iterations: IterationsOpt = None, preset: PresetOpt = "preview", variant: VariantOpt = None,
    photons: PhotonsOpt = None, size: SizeOpt = None, beam: BeamOpt = "parallel",
    source_distance_mm: SourceDistanceOpt = None, detector_distance_mm: DetectorDistanceOpt = None,
    simulation: SimulationOpt = "honest", slice_index: SliceOpt = None, series: SeriesOpt = None, seed: SeedOpt = 0,
    device: DeviceOpt = "auto", out: OutOpt = None, force: ForceOpt = False, anonymize: AnonymizeOpt = False,
    window: WindowOpt = display.AUTO, same_study: SameStudyOpt = False,
    as_json: JsonOpt = False, scan: ScanOpt = None, geometry: GeometryOpt = None, center: CenterOpt = None,
    row: RowOpt = None, reference: ReferenceOpt = None,
) -> None:
    """Simulate a sparse-view scan of a CT slice, reconstruct it and score each method against the slice; or, with
    --scan FILE, reconstruct a measured scan (scores against --reference on all measured views).

    Every option is checked before any reconstruction runs. Ctrl-C stops the running method after its current
    iteration, skips the others and reports and writes what was obtained (exit status 130); a second Ctrl-C
    aborts at once without writing anything."""
    try:
        if (scan is None) == (input is None):
            raise InputError("give INPUT (a slice to simulate a scan of) or --scan FILE (a measured scan), not both"
                             if input is not None else "give INPUT or --scan FILE")
        if scan is not None and (photons is not None or slice_index is not None):
            raise InputError("--photons and --slice apply to simulated scans, not to --scan")
        if scan is None and any(v is not None for v in (geometry, center, row, reference)):
            raise InputError("--geometry, --center, --row and --reference apply to measured scans (--scan FILE)")
        display.check_window(window)
        if (anonymize or force or same_study) and out is None:
            flag = "--anonymize" if anonymize else "--force" if force else "--same-study"
            raise InputError(f"{flag} applies to --out; give --out too")
        methods = settings.parse_methods(method)
        method_settings = settings.method_settings(iterations, preset, variant or None, seed, device)
        scan_setup = None if scan is not None else settings.scan_settings(
            views=60 if views is None else views, photons=photons, seed=seed, beam=beam, simulation=simulation,
            size=size, source_distance_mm=source_distance_mm, detector_distance_mm=detector_distance_mm)
        measured = None if scan is None else {"path": scan, "geometry": geometry, "views": views, "center": center,
                                              "row": row, "size": size, "reference": reference}
    except known_errors() as error:
        fail(str(error))
    for message in ignored_options(methods, iterations, preset, variant):
        console.print(f"[yellow]warning:[/] {message}", highlight=False)
    from sparsect.app.reconstruct_job import run_request  # loads torch: only once a run starts

    run_request(Request(input, methods, method_settings, scan_setup, measured, slice_index, series, out, force,
                         window, anonymize, as_json, same_study))


def ignored_options(methods: tuple[str, ...], iterations: int | None, preset: str, variant: list[str] | None
                    ) -> list[str]:
    """One line per option given that none of ``methods`` uses (a network option without a network, an iteration
    budget for direct methods only), so that an option that does nothing never passes silently."""
    specs = [registry.method(m) for m in methods]
    networks = ", ".join(registry.NETWORK_METHODS)
    given = [option for option, value in (("--preset", preset != "preview"), ("--variant", bool(variant))) if value]
    lines = [f"{' and '.join(given)} apply to the networks ({networks}), none of which is chosen: ignored"] \
        if given and not any(spec.is_network for spec in specs) else []
    if iterations is not None and not any(spec.iterative for spec in specs):
        lines.append(f"--iterations: {', '.join(methods)} has no iterations: ignored")
    return lines


@cli.command()
def app(
    port: Annotated[int, typer.Option(help="Port to serve the page on.")] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to serve other machines (then, with a PACS "
                                           "configured, a sign-in is required).")] = "127.0.0.1",
    pacs_config: Annotated[Path | None, typer.Option(
        help="TOML or JSON file of the PACS endpoints the page may use (name, url, credentials from environment "
             "variables or files, allow_send); see the README, Deploying the page.", show_default=False)] = None,
    max_runs: Annotated[int | None, typer.Option(
        help="Runs at once on this server, all visitors together (default: one per two cores, within the memory).",
        metavar="N", show_default=False)] = None,
) -> None:
    """Start the comparison page in the browser (Streamlit)."""
    from sparsect.app.serve import serve  # reads the PACS configuration's modules: only when serving

    try:
        serve(port=port, host=host, pacs_config=pacs_config, max_runs=max_runs)
    except ValueError as error:  # pacs_endpoints.ConfigError, serve.ServeError: one line, exit 2
        fail(escape(str(error)))  # "[auth]" is text, not rich markup


def main() -> None:
    """Console-script entry point."""
    register(cli)
    cli()


if __name__ == "__main__":
    main()
