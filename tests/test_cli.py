"""`sparsect reconstruct` end to end: outputs readable by independent tools, clear errors."""

import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from app.cli import cli
from reconstruct import metrics

runner = CliRunner()
JSON_KEYS = {"method", "views", "psnr", "ssim", "rmse_hu", "seconds", "iterations", "parameters", "device"}


def _invoke(*args):
    return runner.invoke(cli, ["reconstruct", *args])


def test_reconstruct_sample_writes_readable_outputs(tmp_path):
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "64", "--views", "16", "--method", "fbp", "--method", "cgls",
                     "--iterations", "10", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["method"] for r in records] == ["fbp", "cgls"]
    assert all(set(r) == JSON_KEYS for r in records)
    assert records[1]["iterations"] == 10 and records[0]["views"] == 16

    arrays = np.load(out / "results.npz")
    reference = arrays["reference_hu"]
    assert reference.shape == (64, 64) and arrays["sinogram"].shape[0] == 16
    for record in records:
        image = arrays[f"{record['method']}_hu"]
        # The printed numbers are the scikit-image-checked metrics of the saved image.
        assert record["psnr"] == pytest.approx(metrics.psnr(image, reference, mask="circle"), abs=1e-3)
        with Image.open(out / f"{record['method']}.png") as png:
            assert png.size == (64, 64)
        (dicom_file,) = (out / "dicom" / record["method"]).glob("*.dcm")
        ds = pydicom.dcmread(dicom_file)
        assert ds.Modality == "CT" and "DERIVED" in ds.ImageType
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.abs(hu - image).max() < 0.5
    assert json.loads((out / "metrics.json").read_text()) == records


def test_methods_share_one_sinogram_and_comma_lists_work(tmp_path):
    result = _invoke("ct_small", "--views", "20", "--method", "fbp,sirt", "--iterations", "5", "--json")
    assert result.exit_code == 0, result.output
    methods = [json.loads(line)["method"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert methods == ["fbp", "sirt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/slice.dcm"], "no such file or folder"),
        ([get_testdata_file("MR_small.dcm", download=False)], "MR"),
        (["shepp_logan", "--views", "1"], "--views must be at least 2"),
        (["shepp_logan", "--method", "magic"], "unknown method 'magic'"),
        (["no_such_sample"], "sample name (ct_small"),
    ],
)
def test_bad_input_gives_clear_error(args, message):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_console_script_exit_code_and_message():
    completed = subprocess.run([sys.executable, "-m", "app.cli", "reconstruct", "shepp_logan", "--views", "0"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "error:" in completed.stderr and "Traceback" not in completed.stderr
