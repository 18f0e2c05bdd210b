"""app.batch.pacs: the PACS ends of a batch job (pull into IN_DIR, push the study's derived series)."""

from __future__ import annotations

import shutil

import numpy as np

from sparsect import data
from sparsect.app.batch import pacs


def test_pull_then_push_only_this_studys_outputs(orthanc, make_ct_series, tmp_path):
    credentials = data.Credentials(orthanc.user, orthanc.password)
    source = make_ct_series(2)
    study = source[0].StudyInstanceUID
    data.DicomWeb(orthanc.dicomweb, credentials).store(source)
    assert pacs.pull(orthanc.dicomweb, study, None, tmp_path / "in", credentials) == 2
    ct = data.load(tmp_path / "in")
    out = tmp_path / "out"
    written = data.write_series(out / "fbp_30v", np.zeros_like(ct.hu), ct, "FBP 30 views")
    (out / ".sparsect" / "staging").mkdir(parents=True)
    shutil.copy(written[0], out / ".sparsect" / "staging" / "half-done.dcm")  # the batch's state: not an output
    other = data.load_sample("ct_small")
    data.write_series(out / "other" / "fbp_30v", other.hu, other, "another study")
    assert sorted(pacs.derived_files(out, study)) == sorted(written)
    assert pacs.push(orthanc.dicomweb, study, out, credentials) == 2
    series = data.DicomWeb(orthanc.dicomweb, credentials).search_series(study)
    assert sorted(s["instances"] for s in series) == [2, 2] and len(series) == 2
