"""Wall-clock time of ``sparsect reconstruct --scan`` on a Helsinki Tomography Challenge 2022 scan at full size.

Writes a synthetic ``.mat`` file in the challenge's layout and size (``CtDataFull``: fan beam, 721 views over
360 degrees in 0.5 degree steps, 560 detector bins of 0.2 mm after binning, source 410.66 mm from the
rotation centre and 553.74 mm from the detector, as in the published data), then times the CLI on it at the
challenge's 512x512 grid, for each method list, view count and thread count.

Run as ``python benchmarks/htc_timing.py [--folder DIR] [--methods fbp fbp,sirt,tv] [--views 721 60]
[--threads 1 2]``. Prints one markdown row per run: the command, its wall-clock seconds (process start to
exit, imports included), each method's own seconds (from ``--json``) and the 1-minute load average before
and after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io

VIEWS, BINS, STEP_DEG = 721, 560, 0.5
SOURCE_MM, SOURCE_DETECTOR_MM, PIXEL_MM = 410.66, 553.74, 0.2
#: (centre x, centre y, radius) in mm and attenuation in 1/mm: a 70 mm disc with three holes, like the
#: challenge's acrylic targets.
DISCS = ((0.0, 0.0, 35.0, 0.02), (10.0, 8.0, 8.0, -0.02), (-14.0, -5.0, 5.0, -0.02), (3.0, -18.0, 4.0, -0.02))


def fan_sinogram() -> np.ndarray:
    """Line integrals (VIEWS, BINS) of :data:`DISCS` in the fan geometry, exactly (chord lengths)."""
    angles = np.radians(np.arange(VIEWS) * STEP_DEG)[:, None]
    u = (np.arange(BINS) - (BINS - 1) / 2) * PIXEL_MM
    source = np.stack([SOURCE_MM * np.cos(angles), SOURCE_MM * np.sin(angles)])
    across = SOURCE_DETECTOR_MM - SOURCE_MM
    detector = np.stack([-across * np.cos(angles) - u * np.sin(angles), -across * np.sin(angles) + u * np.cos(angles)])
    direction = detector - source
    direction /= np.linalg.norm(direction, axis=0)
    sinogram = np.zeros((VIEWS, BINS))
    for cx, cy, radius, mu in DISCS:
        to_centre = np.array([cx, cy])[:, None, None] - source
        distance = np.abs(to_centre[0] * direction[1] - to_centre[1] * direction[0])
        sinogram += mu * 2 * np.sqrt(np.clip(radius**2 - distance**2, 0, None))
    return sinogram


def write_scan(path: Path) -> Path:
    """The synthetic challenge file at ``path`` (field names of the published ``htc2022_*_full.mat``)."""
    parameters = {"projectName": "synthetic", "geometryType": "Cone", "distanceSourceOrigin": SOURCE_MM,
                  "distanceSourceDetector": SOURCE_DETECTOR_MM, "distanceUnit": "mm",
                  "geometricMagnification": SOURCE_DETECTOR_MM / SOURCE_MM, "numberImages": float(VIEWS),
                  "angles": (np.arange(VIEWS) * STEP_DEG).reshape(1, -1), "pixelSize": PIXEL_MM / 4,
                  "binningPost": 4.0, "pixelSizePost": PIXEL_MM, "numDetectorsPost": float(BINS)}
    scipy.io.savemat(path, {"CtDataFull": {"type": "2D", "sinogram": fan_sinogram(), "parameters": parameters}})
    return path


def time_run(scan: Path, methods: str, views: int, threads: int) -> dict[str, object]:
    """One CLI run in a fresh process with ``threads`` threads: its command, seconds and load averages."""
    command = ["sparsect", "reconstruct", "--scan", str(scan), "-m", methods, "--size", "512", "--json"]
    if views != VIEWS:
        command += ["--views", str(views)]
    threads_env = {key: str(threads) for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    executable = Path(sys.executable).with_name("sparsect")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([str(executable), *command[1:]], capture_output=True, text=True,
                          env=os.environ | threads_env, check=True)
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    shown = " ".join(f"{key}={value}" for key, value in threads_env.items() if key == "OMP_NUM_THREADS")
    return {"command": f"{shown} {' '.join(command)}", "seconds": seconds,
            "methods": {r["method"]: r["seconds"] for r in records}, "load": (load_before, os.getloadavg()[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="where to write the scan (default: a temp folder)")
    parser.add_argument("--methods", nargs="+", default=["fbp", "fbp,sirt,tv"])
    parser.add_argument("--views", type=int, nargs="+", default=[VIEWS, 60])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        scan = write_scan((args.folder or Path(temporary)) / "htc2022_synthetic_full.mat")
        print("| command | wall s | per method s | load 1 min before/after |")
        print("|---|---:|---|---|")
        for threads in args.threads:
            for views in args.views:
                for methods in args.methods:
                    run = time_run(scan, methods, views, threads)
                    per_method = ", ".join(f"{m} {s:.1f}" for m, s in run["methods"].items())
                    before, after = run["load"]
                    print(f"| `{run['command']}` | {run['seconds']:.1f} | {per_method} | {before:.2f} / {after:.2f} |",
                          flush=True)


if __name__ == "__main__":
    main()
