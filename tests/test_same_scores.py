"""One truth for every score: the same case through the page's compute path, `sparsect reconstruct --json` and a
`sparsect batch` job gives the same scores (all three score with `pipeline.score` against the simulation's
reference, rounded by `pipeline.rounded_scores`)."""

import csv
import io
import json
import shutil

import pytest
from pydicom.data import get_testdata_file
from rich.console import Console
from typer.testing import CliRunner

from sparsect.app import pipeline, settings
from sparsect.app.batch import command as batch
from sparsect.app.cli import cli
from sparsect.app.page import compute as pc

METHODS = ("fbp", "sirt")
VIEWS = 20


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder holding the ct_small sample (pydicom's CT_small.dcm, 128x128) as DICOM."""
    root = tmp_path_factory.mktemp("same") / "in"
    root.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    return root


def _cli(source: str) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["reconstruct", source, "--views", str(VIEWS), "--seed", "0", "--device", "cpu",
                                      "--json", *(part for m in METHODS for part in ("--method", m))])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {r["method"]: {key: r[key] for key in pipeline.SCORE_DIGITS} for r in records}


def _page(folder) -> dict[str, dict]:
    content = (folder / "ct.dcm").read_bytes()
    summary = pc.read_uploads([("ct.dcm", content)])
    assert summary.error is None
    ct = pc.prepare_slice(summary.series[0].slice(0), None)
    scan = settings.scan_settings(views=VIEWS, seed=0)
    simulation = pipeline.simulate(ct, scan)
    chosen = {m: pc.method_settings(m, None, None, "preview", "cpu") for m in METHODS}
    tasks = [pc.Task(pc.run_key("upload", scan, m, chosen[m]), m, chosen[m]) for m in METHODS]
    job = pc.Job(tasks, simulation).start()
    assert job.wait()
    runs = {run.method: run for run in job.results.values()}
    assert set(runs) == set(METHODS), [p.error for p in job.progress.values()]
    return {m: pipeline.rounded_scores(runs[m].metrics) for m in METHODS}


def _batch(folder, out) -> dict[str, dict]:
    code = batch.run_batch(folder, out, views=[str(VIEWS)], methods=list(METHODS), device="cpu", seed=0,
                           console=Console(file=io.StringIO()), stdout=Console(file=io.StringIO()), quiet=True)
    assert code == batch.EXIT_OK
    with open(out / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {r["method"]: {key: None if r[key] in ("", "None") else float(r[key]) for key in pipeline.SCORE_DIGITS}
            for r in rows}


def test_page_cli_and_batch_give_the_same_scores(folder, tmp_path):
    page = _page(folder)
    assert _cli(str(folder)) == page
    assert _cli("ct_small") == page  # the bundled sample is that same file
    assert _batch(folder, tmp_path / "out") == page
    assert all(page[m]["psnr"] is not None for m in METHODS)
