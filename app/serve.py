"""Start the Streamlit page (``sparsect app``) with the safety settings passed explicitly.

The same values live in the project's ``.streamlit/config.toml``; passing them as flags makes them
apply whatever the working directory is (Streamlit reads ``.streamlit/config.toml`` from there only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


def serve(port: int = 8501, host: str = "127.0.0.1") -> None:
    """Replace this process with the Streamlit server (``exec``): signals such as SIGTERM reach the server
    itself, so stopping ``sparsect app`` never leaves an orphan holding the port."""
    command_line = command(port, host)
    os.execve(command_line[0], command_line, environment())
