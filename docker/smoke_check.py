"""Inside the built image (docker/smoke.sh): `sparsect batch` on a small sample folder, then check its outputs.

Exits non-zero with a one-line reason when anything is missing or wrong.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

METHODS = ("fbp", "sirt")


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="sparsect-smoke-"))
    series = root / "in" / "patient1"
    series.mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), series / "ct.dcm")
    out = root / "out"
    command = ["sparsect", "batch", str(root / "in"), str(out), "--views", "30", "--method", ",".join(METHODS),
               "--iterations", "20", "--device", "cpu", "--quiet"]
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        return fail(f"sparsect batch exited with {code}")
    with open(out / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    if sorted(row["method"] for row in rows) != sorted(METHODS):
        return fail(f"metrics.csv has methods {[row['method'] for row in rows]}, expected {list(METHODS)}")
    for row in rows:
        if not (math.isfinite(float(row["psnr"])) and float(row["psnr"]) > 10):
            return fail(f"implausible PSNR {row['psnr']} for {row['method']}")
    json.loads((out / "summary.json").read_text())
    for method in METHODS:
        files = sorted((out / "patient1" / f"{method}_30v").glob("*.dcm"))
        if len(files) != 1:
            return fail(f"expected one derived DICOM file for {method}, found {len(files)}")
        ds = pydicom.dcmread(files[0])
        if ds.Modality != "CT" or "DERIVED" not in ds.ImageType or ds.pixel_array.shape != (128, 128):
            return fail(f"{files[0].name} is not a derived 128x128 CT image")
    print(f"smoke check passed: {len(rows)} rows, derived series for {', '.join(METHODS)}")
    return 0


def fail(message: str) -> int:
    print(f"smoke check failed: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
