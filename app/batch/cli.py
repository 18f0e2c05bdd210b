"""``sparsect batch``'s command line: its options (``--methods`` kept as a deprecated alias of ``--method``) and
the optional PACS pull and push around :func:`sparsect.app.batch.command.run_batch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sparsect import data
from sparsect.app.help import ITERATIONS_HELP, METHOD_HELP, PACS_HELP, Command, flag
from sparsect.app.settings import InputError
from sparsect.reconstruct import registry, windows

_METHODS_ALIAS = "sparsect.batch.methods_alias"


def _deprecated_methods(ctx: typer.Context, value: list[str] | None) -> None:
    """``--methods``, the old name of ``--method``: one warning, and its values kept for :func:`_method_and_alias`
    (the option is eager, so this runs first)."""
    if value:
        typer.echo("warning: --methods is deprecated; use --method", err=True)
        ctx.meta[_METHODS_ALIAS] = list(value)


def _method_and_alias(ctx: typer.Context, param: typer.CallbackParam, value: list[str]) -> list[str]:
    """``--method``'s values plus the deprecated ``--methods``'s; ``--methods`` alone replaces the default."""
    alias = ctx.meta.get(_METHODS_ALIAS)
    if not alias:
        return value
    # compared by name: recent typer releases carry their own copy of click, with its own ParameterSource
    source = ctx.get_parameter_source(param.name)
    return [*value, *alias] if getattr(source, "name", None) == "COMMANDLINE" else alias


def _run_with_pacs(in_dir: Path, out_dir: Path, dicomweb: str | None, study: str | None, series: str | None,
                   push: bool, options: dict[str, Any]) -> int:
    """:func:`run_batch` with ``options``, after pulling ``study`` from the PACS at ``dicomweb`` into ``in_dir``
    (when given) and, with ``push``, storing the results back; the exit code."""
    # loads torch and pydicom: only once a job starts, so that ``--help`` is quick
    from sparsect.app.batch import pacs
    from sparsect.app.batch.command import EXIT_CANNOT_START, EXIT_FAILURES, EXIT_OK, Log, run_batch

    console, link = Console(stderr=True), None
    try:
        link = pacs.Link.from_options(dicomweb, study, series, push, options["anonymize"])
        if link is not None:
            link.pull(in_dir, Log(console))
    except (InputError, data.DicomWebError) as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        return EXIT_CANNOT_START
    code = run_batch(in_dir, out_dir, **options)
    if link is not None and link.push and not options["dry_run"] and code in (EXIT_OK, EXIT_FAILURES):
        try:
            link.store(out_dir, Log(console))
        except data.DicomWebError as error:  # the local outputs stay as they are
            console.print(f"[bold red]error:[/] {error}", highlight=False)
            code = EXIT_FAILURES
    return code


#: What ``sparsect batch --help`` says below the options: what would not fit in 80 columns beside them.
EPILOG = ("--variant: the networks' fit variants are described in `sparsect reconstruct --help`. "
          "--window: sheets of units already done keep theirs. "
          "--dicomweb: credentials come from SPARSECT_DICOMWEB_USER and SPARSECT_DICOMWEB_PASSWORD or "
          "SPARSECT_DICOMWEB_TOKEN, never options. "
          "Skipped files (not CT: another modality, not DICOM) are listed in OUT_DIR/skipped.jsonl, failures "
          "(units, unreadable files) in OUT_DIR/failures.jsonl.")
_VARIANT = "Network fit variants; repeat or comma-separate (default: recommended)."
_WINDOW = "Display window of the contact sheets: " + ", ".join(windows.WINDOWS) + "."


_Preset = Annotated[str, typer.Option(help="Network preset: preview, paper or quality.", metavar="NAME")]


def register(cli: typer.Typer) -> None:
    """Add the ``batch`` command to the ``sparsect`` app."""

    @cli.command(cls=Command, epilog=EPILOG)
    def batch(
        in_dir: Annotated[Path, typer.Argument(help="Folder searched recursively for CT series (DICOM, .zip).",
                                               metavar="IN_DIR", show_default=False)],
        out_dir: Annotated[Path, typer.Argument(help="Output folder (mirrors IN_DIR); reused to resume.",
                                                metavar="OUT_DIR", show_default=False)],
        views: Annotated[list[str], typer.Option(help="View counts; repeat or comma-separate, e.g. 30,60.",
                                                 metavar="N")] = ["60"],  # noqa: B006
        method: Annotated[list[str], typer.Option("--method", "-m", help=METHOD_HELP, callback=_method_and_alias,
                                                  metavar="NAME")] = list(registry.DEFAULT_METHODS),  # noqa: B006, B008
        # --methods, the old name of --method, as a deprecated alias: hidden, warns, and its values join --method's.
        methods: Annotated[list[str] | None, typer.Option("--methods", hidden=True, is_eager=True, expose_value=False,
                                                          callback=_deprecated_methods)] = None,
        preset: _Preset = "preview",
        variant: Annotated[list[str] | None, typer.Option(help=_VARIANT, show_default=False, metavar="NAME")] = None,
        iterations: Annotated[int | None, typer.Option(help=ITERATIONS_HELP, show_default=False, metavar="N")] = None,
        photons: Annotated[float | None, typer.Option(help="Incident photons per ray (low-dose noise).",
                                                      metavar="N")] = None,
        size: Annotated[int | None, typer.Option(help="Reconstruct on an N x N working grid (default: the "
                                                 "slice's own).", show_default=False, metavar="N")] = None,
        window: Annotated[str, typer.Option(help=_WINDOW, metavar="NAME")] = "full",
        seed: Annotated[int, typer.Option(help="Seed for the noise (plus the slice index) and the networks.",
                                          metavar="N")] = 0,
        slices: Annotated[str, typer.Option(help="all, middle, N or N-M (0-based, inclusive).", metavar="SPEC")
                          ] = "all",
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", metavar="NAME")] = "auto",
        anonymize: Annotated[bool, flag("--anonymize", "De-identify the derived DICOM (PS3.15 basic profile).")
                             ] = False,
        workers: Annotated[int, typer.Option(help="Worker processes (0: one per GPU, else 1).", metavar="N")] = 0,
        batch_size: Annotated[int, typer.Option(help="Slices fitted at once (0: from free GPU memory).",
                                                metavar="N")] = 0,
        shard: Annotated[str | None, typer.Option(help="K/N: do only share K (1-based) of N, for array jobs.",
                                                  metavar="K/N")] = None,
        executor: Annotated[str, typer.Option(help="local or ray.", metavar="NAME")] = "local",
        ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local one).",
                                                        show_default=False, metavar="ADDR")] = None,
        simulation: Annotated[str, typer.Option(help="honest or same-grid (the 'inverse crime').",
                                                metavar="NAME")] = "honest",
        dry_run: Annotated[bool, flag("--dry-run", "List the work units (todo/done) and exit.")] = False,
        quiet: Annotated[bool, flag("--quiet", "No progress bar or table: only the structured log lines.")
                         ] = False,
        dicomweb: Annotated[str | None, typer.Option(help="DICOMweb base URL of a PACS: pull --study into IN_DIR "
                                                     "first.", show_default=False, metavar="URL")] = None,
        study: Annotated[str | None, typer.Option(help=PACS_HELP["study"], show_default=False, metavar="UID")] = None,
        series: Annotated[str | None, typer.Option(help=PACS_HELP["series"], show_default=False, metavar="UID")
                          ] = None,
        push: Annotated[bool, flag("--push", PACS_HELP["push"])] = False,
    ) -> None:
        """Reconstruct every CT series under IN_DIR; restartable. Exit codes: 0 ok, 3 some failures (see
        failures.jsonl), 2 could not start (or no CT series in IN_DIR), 130/143 stopped by SIGINT/SIGTERM
        (rerun to resume). With --dicomweb, the study is first pulled into IN_DIR (and with --push the results
        stored back)."""
        raise typer.Exit(_run_with_pacs(in_dir, out_dir, dicomweb, study, series, push, dict(
            views=views, methods=method, preset=preset, variant=variant or None, iterations=iterations,
            photons=photons, seed=seed, slices=slices, device=device, anonymize=anonymize, workers=workers,
            batch_size=batch_size, shard=shard, executor=executor, ray_address=ray_address, dry_run=dry_run,
            quiet=quiet, simulation=simulation, size=size, window=window)))


__all__ = ["register"]
