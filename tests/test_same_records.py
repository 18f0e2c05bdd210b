"""One runner, one record: the same simulated case through `sparsect reconstruct --json`, a `sparsect batch` job and
the page's job, and the same measured scan through `sparsect reconstruct --scan --json` and the page's job, give
identical records: every field but the wall time."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file
from rich.console import Console
from typer.testing import CliRunner

from sparsect import data
from sparsect.app import measured_scan, records, run, scans, settings
from sparsect.app.batch import command as batch
from sparsect.app.batch.store import COLUMNS
from sparsect.app.cli import cli
from sparsect.app.page import compute as pc
from sparsect.app.page import uploads
from sparsect.app.page.jobs import Job
from sparsect.operators import ParallelBeam, Radon

METHODS = ("fbp", "sirt", "lrnn")
VIEWS = 20
ITERATIONS = 3  # the network's budget, kept small; SIRT's too
#: What differs between two runs of one computation: its wall time, and where each way of running names the input
#: from (a folder, a sample name, an upload; the series and slice as each knows them), checked on their own.
TIMED = ("seconds", *records.SOURCE_FIELDS)


def _same(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in TIMED}


def _json_records(result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {r["method"]: _same(r) for r in found}


def _page(scan: scans.Scan) -> dict[str, dict]:
    chosen = {m: pc.method_settings(m, ITERATIONS, ITERATIONS, "preview", "cpu", ["fbp_init"]) for m in METHODS}
    job = Job([run.Task(m, chosen[m], m) for m in METHODS], scan).start()
    assert job.wait()
    assert set(job.results) == set(METHODS), [p.error for p in job.progress.values()]
    return {m: _same(job.results[m].record()) for m in METHODS}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder holding the ct_small sample (pydicom's CT_small.dcm, 128x128) as DICOM."""
    root = tmp_path_factory.mktemp("same") / "in"
    root.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    return root


def _cli_args() -> list[str]:
    return ["--seed", "0", "--device", "cpu", "--json", "--iterations", str(ITERATIONS), "--variant", "fbp_init",
            *(part for m in METHODS for part in ("--method", m))]


def _batch(folder, out) -> dict[str, dict]:
    code = batch.run_batch(folder, out, views=[str(VIEWS)], methods=list(METHODS), device="cpu", seed=0,
                           iterations=ITERATIONS, variant=["fbp_init"], console=Console(file=io.StringIO()),
                           stdout=Console(file=io.StringIO()), quiet=True)
    assert code == batch.EXIT_OK
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(list(row) == list(COLUMNS) for row in rows)
    return {r["method"]: _same({key: r[key] for key in records.RECORD_FIELDS}) for r in rows}


def test_a_simulated_slice_gives_one_record_through_the_cli_batch_and_page(folder, tmp_path):
    summary = uploads.read_uploads([("ct.dcm", (folder / "ct.dcm").read_bytes())])
    assert summary.error is None
    ct = scans.prepare_slice(summary.series[0].slice(0), None)
    page = _page(scans.simulate(ct, settings.scan_settings(views=VIEWS, seed=0)))
    assert all(set(record) == set(records.RECORD_FIELDS) - set(TIMED) for record in page.values())
    assert page["lrnn"]["fit"] == "LRNN, FBP warm start" and page["fbp"]["fit"] == "FBP"
    assert page["lrnn"]["psnr"] is not None and page["lrnn"]["parameters"] > 0
    runner = CliRunner()
    assert _json_records(runner.invoke(cli, ["reconstruct", str(folder), "--views", str(VIEWS), *_cli_args()])) == page
    assert _json_records(runner.invoke(cli, ["reconstruct", "ct_small", "--views", str(VIEWS), *_cli_args()])) == page
    assert _batch(folder, tmp_path / "out") == page


def test_a_measured_scan_gives_one_record_through_the_cli_and_page(tmp_path):
    mu = data.load_sample("shepp_logan", 48).hu
    mu = ((mu + 1000.0) / 1000.0 * 0.02).clip(0).astype(np.float32)
    geometry = ParallelBeam(np.arange(90) * np.pi / 90, 48, 1.0, 48)
    np.save(tmp_path / "scan.npy", (Radon(geometry)(torch.from_numpy(mu).double()) * 0.5).numpy())
    (tmp_path / "scan.json").write_text(json.dumps({"beam": "parallel", "detector_pixel_mm": 0.5,
                                                    "angles_deg": np.degrees(geometry.angles.numpy()).tolist()}))
    prepared = measured_scan.prepare(tmp_path / "scan.npy", tmp_path / "scan.json", views=30)
    page = _page(measured_scan.measured_scan(prepared))
    assert page["sirt"]["scored_against"] == "FBP of all 90 measured views" and page["sirt"]["measured_views"] == 90
    assert page["sirt"]["simulation"] is None and page["sirt"]["psnr"] is not None
    result = CliRunner().invoke(cli, ["reconstruct", "--scan", str(tmp_path / "scan.npy"), "--geometry",
                                      str(tmp_path / "scan.json"), "--views", "30", *_cli_args()])
    assert _json_records(result) == page
