"""app.batch.pacs: the PACS ends of a batch job (pull into IN_DIR, push the study's derived series)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from sparsect import data
from sparsect.app.batch import pacs
from sparsect.app.batch.cli import register

cli = typer.Typer()
cli.callback()(lambda: None)
register(cli)


def test_pull_then_push_only_this_studys_outputs(orthanc, make_ct_series, tmp_path):
    credentials = data.Credentials(orthanc.user, orthanc.password)
    source = make_ct_series(2)
    study = source[0].StudyInstanceUID
    data.DicomWeb(orthanc.dicomweb, credentials).store(source)
    assert pacs.pull(orthanc.dicomweb, study, None, tmp_path / "in", credentials) == 2
    ct = data.load(tmp_path / "in")
    out = tmp_path / "out"
    written = data.write_series(out / "fbp_30v", np.zeros_like(ct.hu), ct, "FBP 30 views", same_study=True)
    (out / ".sparsect" / "staging").mkdir(parents=True)
    shutil.copy(written[0], out / ".sparsect" / "staging" / "half-done.dcm")  # the batch's state: not an output
    other = data.load_sample("ct_small")
    data.write_series(out / "other" / "fbp_30v", other.hu, other, "another study")
    assert sorted(pacs.derived_files(out, study)) == sorted(written)
    assert pacs.push(orthanc.dicomweb, study, out, credentials) == 2
    series = data.DicomWeb(orthanc.dicomweb, credentials).search_series(study)
    assert sorted(s["instances"] for s in series) == [2, 2] and len(series) == 2


def test_batch_pulls_reconstructs_and_pushes(orthanc, make_ct_series, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSECT_DICOMWEB_USER", orthanc.user)
    monkeypatch.setenv("SPARSECT_DICOMWEB_PASSWORD", orthanc.password)
    source = make_ct_series(2)
    study = source[0].StudyInstanceUID
    pacs_server = data.DicomWeb(orthanc.dicomweb)
    pacs_server.store(source)
    args = ["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--dicomweb", orthanc.dicomweb, "--study", study,
            "--push", "-m", "fbp", "--views", "30", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "event=pacs.push" in result.output and orthanc.password not in result.output
    derived = [s for s in pacs_server.search_series(study) if s["series_uid"] != source[0].SeriesInstanceUID]
    assert [s["instances"] for s in derived] == [2]
    stored = pacs_server.retrieve(study, derived[0]["series_uid"])
    assert {ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in stored} == {ds.SOPInstanceUID for ds in source}


@pytest.mark.parametrize(("extra", "message"), [
    (["--study", "1.2.3"], "need --dicomweb URL"),
    (["--dicomweb", "http://127.0.0.1:1/dicom-web"], "needs --study UID"),
    (["--dicomweb", "http://127.0.0.1:1/dicom-web", "--study", "1.2", "--push", "--anonymize"], "--anonymize"),
    (["--dicomweb", "http://127.0.0.1:1/dicom-web", "--study", "1.2"], "cannot connect"),
])
def test_batch_pacs_errors_stop_before_any_work(tmp_path, extra, message, monkeypatch):
    monkeypatch.delenv("SPARSECT_DICOMWEB_USER", raising=False)
    monkeypatch.delenv("SPARSECT_DICOMWEB_PASSWORD", raising=False)
    monkeypatch.delenv("SPARSECT_DICOMWEB_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "in"), str(tmp_path / "out"), *extra])
    assert result.exit_code == 2 and message in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "out").exists()
