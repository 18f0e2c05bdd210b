"""A corpus of bad inputs and options: each, through `sparsect reconstruct`, `sparsect batch` (where it applies)
and the page's compute path, gives a non-zero exit (or a page error), one short line and no file left behind."""

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from rich.console import Console
from typer.testing import CliRunner

from sparsect.app import limits, scans, settings
from sparsect.app.batch import command as batch
from sparsect.app.cli import cli
from sparsect.app.page import compute as pc
from sparsect.app.page import uploads

runner = CliRunner()
CT = Path(get_testdata_file("CT_small.dcm"))


def _dicom(path: Path, change) -> None:
    ds = pydicom.dcmread(CT)
    change(ds)
    ds.save_as(path)


def _tiny(ds) -> None:
    ds.Rows = ds.Columns = 4
    ds.PixelData = np.zeros((4, 4), dtype=np.int16).tobytes()


def _constant(ds) -> None:
    ds.RescaleSlope = 0


def _no_pixels(ds) -> None:
    del ds.PixelData


def _write_file(kind: str, folder: Path) -> Path:
    """One bad input named ``kind`` inside ``folder`` (a folder of its own); returns the path to pass."""
    folder.mkdir(parents=True)
    raw = CT.read_bytes()
    if kind == "truncated":
        (folder / "a.dcm").write_bytes(raw[: len(raw) // 2])
    elif kind == "not_dicom":
        (folder / "a.dcm").write_text("not a DICOM file\n")
    elif kind == "empty_folder":
        return folder
    elif kind == "zip_of_junk":
        with zipfile.ZipFile(folder / "a.zip", "w") as archive:
            archive.writestr("junk.bin", os.urandom(256))
        return folder / "a.zip"
    else:
        _dicom(folder / "a.dcm", {"no_pixels": _no_pixels, "slope_0": _constant, "4x4": _tiny}[kind])
    return folder / "a.dcm" if kind != "empty_folder" else folder


FILE_CASES = ["truncated", "not_dicom", "no_pixels", "slope_0", "4x4", "empty_folder", "zip_of_junk"]


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _assert_refused(result, root: Path, before: set[str]) -> None:
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a handled exit, not an escaped error
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and len(lines[0]) < 300, result.stderr
    assert _tree(root) == before


@pytest.mark.parametrize("kind", FILE_CASES)
def test_bad_files_through_reconstruct(tmp_path, kind):
    source = _write_file(kind, tmp_path / "in")
    before = _tree(tmp_path)
    result = runner.invoke(cli, ["reconstruct", str(source), "--out", str(tmp_path / "out"), "--size", "32"])
    _assert_refused(result, tmp_path, before)


@pytest.mark.parametrize("kind", FILE_CASES)
def test_bad_files_through_batch(tmp_path, kind):
    source = _write_file(kind, tmp_path / "in")
    folder = source if source.is_dir() else source.parent
    err = io.StringIO()
    code = batch.run_batch(folder, tmp_path / "out", console=Console(file=err, width=300),
                           stdout=Console(file=io.StringIO()), quiet=True)
    assert code != 0 and "Traceback" not in err.getvalue()
    assert not (tmp_path / "out" / "metrics.csv").exists() or not (tmp_path / "out" / "metrics.csv").read_text(
        ).strip().splitlines()[1:]  # no result row for a bad input


@pytest.mark.parametrize("kind", [k for k in FILE_CASES if k != "empty_folder"])
def test_bad_files_through_the_page(tmp_path, kind):
    source = _write_file(kind, tmp_path / "in")
    summary = uploads.read_uploads([(source.name, source.read_bytes())])
    if summary.error is None:  # readable, but not usable as a slice: the page shows the InputError
        with pytest.raises(settings.InputError) as raised:
            scans.prepare_slice(summary.series[0].slice(0), None)
        assert "\n" not in str(raised.value)
    else:
        assert "\n" not in summary.error and "Traceback" not in summary.error


def _measured(tmp_path: Path, kind: str) -> list[str]:
    sinogram = np.ones((30, 40), dtype=np.float32)
    if kind == "nan_scan":
        sinogram[3, 4] = np.nan
    np.save(tmp_path / "scan.npy", sinogram)
    args = ["--scan", str(tmp_path / "scan.npy")]
    if kind == "negative_distances":
        geometry = {"beam": "fan", "source_distance_mm": -500.0, "detector_distance_mm": -100.0,
                    "detector_pixel_mm": 1.0, "angles_deg": list(np.linspace(0, 360, 30, endpoint=False))}
        (tmp_path / "geometry.json").write_text(json.dumps(geometry))
        args += ["--geometry", str(tmp_path / "geometry.json")]
    return args


@pytest.mark.parametrize("kind", ["nan_scan", "negative_distances"])
def test_bad_measured_scans(tmp_path, kind):
    args = _measured(tmp_path, kind)
    before = _tree(tmp_path)
    result = runner.invoke(cli, ["reconstruct", *args, "--out", str(tmp_path / "out")])
    _assert_refused(result, tmp_path, before)


OPTION_CASES = {
    "views_0": ["--views", "0"],
    "views_100000": ["--views", "100000"],
    "size_3": ["--size", "3"],
    "window_bogus": ["--window", "bogus"],
    "slice_99": ["--slice", "99"],
    "preset_bogus": ["--preset", "bogus"],
    "variant_bogus": ["--variant", "bogus"],
    "iterations_0": ["--method", "sirt", "--iterations", "0"],
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_options_through_reconstruct(tmp_path, monkeypatch, case):
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "1e9")
    shutil.copy(CT, tmp_path / "ct.dcm")
    before = _tree(tmp_path)
    result = runner.invoke(cli, ["reconstruct", str(tmp_path / "ct.dcm"), "--size", "32", "--views", "8",
                                 "--out", str(tmp_path / "out"), *OPTION_CASES[case]])
    _assert_refused(result, tmp_path, before)


@pytest.mark.parametrize("case", ["existing_file", "under_a_file", "unwritable_folder"])
def test_bad_out_folders(tmp_path, case):
    (tmp_path / "file").write_text("kept\n")
    out = {"existing_file": tmp_path / "file", "under_a_file": tmp_path / "file" / "out",
           "unwritable_folder": tmp_path / "locked" / "out"}[case]
    if case == "unwritable_folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into any folder")
        (tmp_path / "locked").mkdir(mode=0o500)
    before = _tree(tmp_path)
    result = runner.invoke(cli, ["reconstruct", "shepp_logan", "--size", "32", "--views", "8", "--out", str(out)])
    _assert_refused(result, tmp_path, before)
    assert (tmp_path / "file").read_text() == "kept\n"


@pytest.mark.parametrize("case, kwargs", [
    ("views_0", {"views": ["0"]}), ("views_100000", {"views": ["100000"]}), ("preset_bogus", {"preset": "bogus"}),
    ("variant_bogus", {"variant": ["bogus"]}), ("iterations_0", {"iterations": 0}),
])
def test_bad_options_through_batch(tmp_path, monkeypatch, case, kwargs):
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "1e9")
    (tmp_path / "in").mkdir()
    shutil.copy(CT, tmp_path / "in" / "ct.dcm")
    err = io.StringIO()
    code = batch.run_batch(tmp_path / "in", tmp_path / "out", console=Console(file=err, width=300),
                           stdout=Console(file=io.StringIO()), quiet=True, **kwargs)
    assert code == batch.EXIT_CANNOT_START
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err.getvalue()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, call", [
    ("views_0", lambda: settings.scan_settings(views=0)),
    ("preset_bogus", lambda: pc.method_settings("lrnn", None, None, "bogus", "cpu")),
    ("variant_bogus", lambda: pc.method_settings("lrnn", None, None, "preview", "cpu", ["bogus"])),
    ("iterations_0", lambda: pc.method_settings("sirt", 0, None, "preview", "cpu")),
])
def test_bad_options_through_the_page(case, call):
    with pytest.raises(settings.InputError) as raised:
        call()
    assert "\n" not in str(raised.value)

