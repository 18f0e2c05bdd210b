"""Container health check (Dockerfile ``HEALTHCHECK``): healthy unless ``sparsect app`` stops answering.

In app mode (PID 1 runs ``sparsect app``) it asks Streamlit's health endpoint on ``$SPARSECT_PORT``
(default 8501); in batch mode (or any other command) it reports healthy, because a batch job is watched
through its exit code, not through HTTP.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def _pid1_args() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as stream:
            return [part.decode(errors="replace") for part in stream.read().split(b"\0") if part]
    except OSError:
        return []


def main() -> int:
    args = _pid1_args()
    if "app" not in args[1:]:
        return 0
    port = os.environ.get("SPARSECT_PORT", "8501")
    if "--port" in args[:-1]:
        port = args[args.index("--port") + 1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
