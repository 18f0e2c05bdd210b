"""Renamed options keep their old name as a deprecated alias for one release (see CHANGELOG.md): it still works,
warns once on stderr and is hidden from --help."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from sparsect.app.batch import command as batch

ROOT = Path(__file__).resolve().parents[1]
METHODS_WARNING = "warning: --methods is deprecated; use --method"
runner = CliRunner()


@pytest.fixture(scope="module")
def one_slice(tmp_path_factory) -> Path:
    """IN_DIR with one series of one 128x128 CT slice (pydicom's CT_small)."""
    root = tmp_path_factory.mktemp("one_slice") / "in"
    (root / "patient1").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "patient1" / "ct.dcm")
    return root


def test_batch_methods_runs_the_job_and_warns(one_slice, tmp_path):
    """The real command line, in a process of its own: the job runs and stderr has the one warning line."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sparsect.app.cli", "batch", str(one_slice), str(out),
                           "--methods", "fbp", "--views", "12", "--device", "cpu", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == batch.EXIT_OK, done.stderr
    assert done.stderr.splitlines().count(METHODS_WARNING) == 1
    with open(out / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["method"], row["views"]) for row in rows] == [("fbp", "12")]
    assert len(list((out / "patient1" / "fbp_12v").glob("*.dcm"))) == 1


@pytest.mark.parametrize(("options", "methods"), [
    (["--methods", "fbp,sirt", "--methods", "tv"], {"fbp", "sirt", "tv"}),  # repeatable and comma-separated
    (["--methods", "sirt"], {"sirt"}),  # replaces --method's default (fbp)
    (["-m", "cgls", "--methods", "tv"], {"cgls", "tv"}),  # joins --method's values, in either order
    (["--methods", "tv", "--method", "cgls"], {"cgls", "tv"}),
])
def test_batch_methods_means_method(batch_app, one_slice, tmp_path, options, methods):
    result = runner.invoke(batch_app, ["batch", str(one_slice), str(tmp_path / "out"), *options, "--views", "12",
                                 "--dry-run"])
    assert result.exit_code == batch.EXIT_OK, result.output
    listed = {line.rsplit("method=", 1)[1] for line in result.stdout.splitlines() if "\tmethod=" in line}
    assert listed == methods
    assert result.stderr.count(METHODS_WARNING) == 1


def test_batch_method_does_not_warn_and_methods_is_hidden(batch_app, one_slice, tmp_path):
    result = runner.invoke(batch_app, ["batch", str(one_slice), str(tmp_path / "out"), "--method", "fbp", "--views",
                                       "12", "--dry-run"])
    assert result.exit_code == batch.EXIT_OK, result.output
    assert METHODS_WARNING not in result.stderr
    help_text = runner.invoke(batch_app, ["batch", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--method" in help_text and "--methods" not in help_text
