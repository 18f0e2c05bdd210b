"""What ``sparsect reconstruct`` prints on the terminal besides its results: one-line errors and warnings on
stderr, and its exit statuses."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from sparsect import data
from sparsect.app import stopping
from sparsect.app.settings import InputError

console = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2
EXIT_METHOD_FAILED = 1  # a method raised: the others' results are reported and written
EXIT_INTERRUPTED = stopping.EXIT_INTERRUPTED  # 128 + SIGINT, as ``sparsect batch``


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
    """A warning (e.g. a network fit rolled back) as one ``warning:`` line on stderr, without the source line
    (a ``warnings.showwarning``)."""
    console.print(f"[yellow]warning:[/] {message}", highlight=False)


def known_errors() -> tuple[type[BaseException], ...]:
    """The errors a command reports as one ``error:`` line (bad input, unreadable files) rather than a traceback."""
    return (data.DicomError, data.ScanError, InputError, ValueError, FileNotFoundError, NotADirectoryError)
