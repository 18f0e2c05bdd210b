"""``sparsect batch`` as a new user meets it (issue #36): files that are not CT are skipped, not failures; a folder
without CT says so; ``--size`` and ``--window``; one summary line; ``--help`` at 80 columns."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import typer
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from sparsect.app.batch import command as batch

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--views", "12", "--method", "fbp", "--device", "cpu"]  # one 128x128 slice: a second or so


@pytest.fixture(scope="module")
def ct_and_notes(tmp_path_factory) -> Path:
    """IN_DIR with one CT slice (pydicom's CT_small) and a stray notes.txt beside it."""
    root = tmp_path_factory.mktemp("ct_and_notes") / "in"
    (root / "patient1").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "patient1" / "ct.dcm")
    (root / "patient1" / "notes.txt").write_text("scanned on Tuesday\n")
    return root


def _invoke(batch_app: typer.Typer, *args: object) -> object:
    return CliRunner().invoke(batch_app, ["batch", *map(str, args)])


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_a_stray_text_file_is_skipped_not_a_failure(ct_and_notes, tmp_path):
    """The real command line: exit 0, the text file listed as skipped, one summary line."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sparsect.app.cli", "batch", str(ct_and_notes), str(out), *QUICK],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == batch.EXIT_OK, done.stderr
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(Path(s["file"]).name, s["kind"]) for s in skipped] == [("notes.txt", "skipped")]
    assert "not a DICOM file" in skipped[0]["reason"]
    assert (out / "failures.jsonl").read_text() == ""
    assert "event=input.skipped" in done.stderr and "notes.txt" in done.stderr and "level=error" not in done.stderr
    assert f"1 unit done, 0 failed, 1 file skipped (not CT); results in {out / 'metrics.csv'}" in done.stdout
    assert "failure" not in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == 0 and summary["skipped"] == 1


def test_only_mr_says_no_ct_series_and_exits_2(batch_app, tmp_path):
    in_dir = tmp_path / "mr_only"
    in_dir.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), in_dir / "mr.dcm")
    result = _invoke(batch_app, in_dir, tmp_path / "out", *QUICK)
    assert result.exit_code == batch.EXIT_CANNOT_START, result.output
    assert f"no CT series found in IN_DIR {str(in_dir)!r}" in result.stderr
    assert "mr.dcm: modality MR" in result.stderr and "is not CT" in result.stderr
    assert "sparse-view batch" not in result.stdout  # no empty table
    assert not (tmp_path / "out").exists()


def test_size_gives_its_grid_and_a_changed_size_redoes_the_units(batch_app, ct_and_notes, tmp_path):
    out = tmp_path / "out"
    result = _invoke(batch_app, ct_and_notes, out, *QUICK, "--size", "32", "--quiet")
    assert result.exit_code == batch.EXIT_OK, result.output
    derived = [pydicom.dcmread(p) for p in (out / "patient1" / "fbp_12v").glob("*.dcm")]
    assert [d.pixel_array.shape for d in derived] == [(32, 32)]
    assert [row["size"] for row in _rows(out)] == ["32"]
    assert "size=32" in result.stderr
    with open(out / "patient1" / "fbp_12v.png", "rb") as stream:  # reference and reconstruction both 32x32
        assert stream.read(24)[16:24] == (64).to_bytes(4, "big") + (32).to_bytes(4, "big")

    again = _invoke(batch_app, ct_and_notes, out, *QUICK, "--size", "32", "--dry-run")
    other = _invoke(batch_app, ct_and_notes, out, *QUICK, "--size", "48", "--dry-run")
    default = _invoke(batch_app, ct_and_notes, out, *QUICK, "--dry-run")
    assert again.stdout.startswith("done\t") and other.stdout.startswith("todo\t")
    assert default.stdout.startswith("todo\t")  # the slice's own grid (128) is another size too

    result = _invoke(batch_app, ct_and_notes, out, *QUICK, "--size", "8")
    assert result.exit_code == batch.EXIT_CANNOT_START
    assert "--size must be at least 16 pixels, got 8" in result.stderr


def test_window_changes_the_sheet_but_not_the_fingerprint(batch_app, ct_and_notes, tmp_path):
    full, brain = tmp_path / "full", tmp_path / "brain"
    assert _invoke(batch_app, ct_and_notes, full, *QUICK, "--quiet").exit_code == batch.EXIT_OK
    result = _invoke(batch_app, ct_and_notes, brain, *QUICK, "--quiet", "--window", "brain")
    assert result.exit_code == batch.EXIT_OK, result.output
    sheet = "patient1/fbp_12v.png"
    assert (full / sheet).read_bytes() != (brain / sheet).read_bytes()
    assert _rows(full)[0]["psnr"] == _rows(brain)[0]["psnr"]
    marker = next((brain / ".sparsect" / "done").glob("*.json"))
    assert json.loads(marker.read_text())["fingerprint"] == json.loads(
        next((full / ".sparsect" / "done").glob("*.json")).read_text())["fingerprint"]
    listed = _invoke(batch_app, ct_and_notes, full, *QUICK, "--window", "lung", "--dry-run")
    assert listed.exit_code == batch.EXIT_OK and listed.stdout.startswith("done\t")

    result = _invoke(batch_app, ct_and_notes, tmp_path / "bad", *QUICK, "--window", "bright")
    assert result.exit_code == batch.EXIT_CANNOT_START
    assert "unknown --window 'bright'; choose from brain, subdural, soft_tissue, lung, bone, full" in result.stderr
    assert not (tmp_path / "bad").exists()


def test_help_fits_80_columns(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sparsect.app.cli", "batch", "--help"], cwd=ROOT, timeout=120,
                          capture_output=True, text=True, env=dict(os.environ, COLUMNS="80", TERM="dumb"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in done.stdout and "<bool>" not in done.stdout and "--no-" not in done.stdout
    for option in ("--views", "--method", "--size", "--window", "--batch-size", "--ray-address", "--simulation",
                   "--anonymize", "--dry-run", "--dicomweb", "--push"):
        assert any(f" {option} " in line for line in lines), option
    for default in ("[default: 60]", "[default: full]", "[default: preview]", "[default: honest]"):
        assert default in done.stdout, default
    assert "skipped.jsonl" in done.stdout and "SPARSECT_DICOMWEB_TOKEN" in done.stdout
