"""Start the Streamlit page (``sparsect app``) with the safety settings passed explicitly.

The same values live in the project's ``.streamlit/config.toml``; passing them as flags makes them
apply whatever the working directory is (Streamlit reads ``.streamlit/config.toml`` from there only).

Before serving, :func:`check` reads the operator's PACS configuration (``--pacs-config FILE`` and the
``SPARSECT_PACS_*`` variables, :mod:`sparsect.app.pacs_endpoints`) and refuses a non-loopback address with
a PACS configured and no sign-in (:mod:`sparsect.app.access`).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from sparsect.app import access, pacs_endpoints, run_queue

#: Upload size limit in megabytes (``server.maxUploadSize``).
MAX_UPLOAD_MB = 1024


def page_path() -> Path:
    """Path of the page script, app/page/main.py, inside the installed package."""
    return Path(__file__).resolve().parent / "page" / "main.py"


def command(port: int = 8501, host: str = "127.0.0.1") -> list[str]:
    """The ``streamlit run`` command line for the page."""
    return [
        sys.executable, "-m", "streamlit", "run", str(page_path()),
        "--server.port", str(int(port)),
        "--server.address", str(host),
        "--server.headless", "true",
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--browser.gatherUsageStats", "false",
        "--client.showErrorDetails", "false",
        "--client.toolbarMode", "minimal",
        "--global.developmentMode", "false",
        "--theme.base", "dark",
        "--theme.primaryColor", "#f5b700",
    ]


def environment() -> dict[str, str]:
    """The child's environment: Streamlit telemetry off."""
    env = dict(os.environ)
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    env["STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"] = "false"
    return env


class ServeError(ValueError):
    """The page must not be served with these settings (one line)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check(host: str, environ: Mapping[str, str], secrets: list[Path] | None = None) -> list[str]:
    """The configured PACS endpoints' names, after checking that the page may be served on ``host``.

    Raises
    ------
    pacs_endpoints.ConfigError
        The PACS configuration cannot be used.
    ServeError
        ``host`` is not loopback, a PACS is configured and no sign-in is, or the shared password is too short.
    """
    endpoints = pacs_endpoints.configured(environ)
    plain = environ.get(access.PASSWORD_VARIABLE)
    if plain and not environ.get(access.HASH_VARIABLE) and len(plain) < access.MIN_PASSWORD:
        raise ServeError(f"{access.PASSWORD_VARIABLE} must have at least {access.MIN_PASSWORD} characters")
    if endpoints and not is_loopback(host) and access.method(environ, secrets) is None:
        raise ServeError(f"refusing to serve on {host} with a PACS configured and no sign-in: set "
                         f"{access.HASH_VARIABLE} (or {access.PASSWORD_VARIABLE}) or an [auth] table in "
                         ".streamlit/secrets.toml (see \"Deploying the page\" in the README)")
    return [e.name for e in endpoints]


def serve(port: int = 8501, host: str = "127.0.0.1", pacs_config: str | os.PathLike | None = None,
          max_runs: int | None = None) -> None:
    """Check the settings (:func:`check`, raising its errors), then replace this process with the Streamlit
    server (``exec``): signals such as SIGTERM reach the server itself, so stopping ``sparsect app`` never
    leaves an orphan holding the port. ``pacs_config`` reaches the page as ``SPARSECT_PACS_CONFIG``, ``max_runs``
    (the server-wide limit of runs at once) as ``SPARSECT_MAX_RUNS``."""
    env = environment()
    if pacs_config is not None:
        env[pacs_endpoints.CONFIG_VARIABLE] = str(Path(pacs_config).resolve())
    if max_runs is not None:
        if max_runs < 1:
            raise ValueError(f"--max-runs must be at least 1, got {max_runs}")
        env[run_queue.MAX_RUNS_ENV] = str(int(max_runs))
    check(host, env)
    command_line = command(port, host)
    os.execve(command_line[0], command_line, env)
