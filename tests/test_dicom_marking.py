"""Derived series are marked as research reconstructions and go into a study of their own (issue #36)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from sparsect import __version__, data
from sparsect.app.cli import cli
from sparsect.data.dicom_marking import RESEARCH_STUDY, research_study_uid
from sparsect.data.dicom_write import Provenance, synthetic_source

SOURCE = get_testdata_file("CT_small.dcm")
DCIODVFY = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")


@pytest.fixture
def ct_slice():
    return data.load_slice(SOURCE)


@pytest.fixture
def measured_source():
    """What app/run_outputs.py writes a measured scan's series against: a synthetic header, no patient."""
    header = synthetic_source(b"a measured sinogram", "MEASURED", "Measured fan-beam scan, 120 views")
    return data.CTSlice(hu=np.zeros((32, 32), np.float32), spacing=(1.0, 1.0), dataset=header)


def _errors(path: Path) -> list[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def _write(folder: Path, reference, provenance, **options) -> pydicom.Dataset:
    image = reference.hu + np.float32(5.0)
    (path,) = data.write_series(folder, image, reference, provenance, **options)
    return pydicom.dcmread(path)


@DCIODVFY
@pytest.mark.parametrize("same_study", [False, True])
@pytest.mark.parametrize("anonymize", [False, True])
def test_dciodvfy_accepts_the_marked_series(tmp_path, ct_slice, measured_source, same_study, anonymize):
    options = {"same_study": same_study, "anonymize": anonymize}
    simulated = data.write_series(tmp_path / "sim", ct_slice.hu, ct_slice,
                                  Provenance("LRNN", 60, fit="LRNN, 3 seeds, FBP warm start"), **options)
    measured = data.write_series(tmp_path / "meas", measured_source.hu, measured_source,
                                 Provenance("SIRT", 30, 120, iterative=True), **options)
    for path in simulated + measured:
        assert _errors(path) == [], path


def test_simulated_slice_is_marked_and_gets_a_research_study(tmp_path, ct_slice):
    src = pydicom.dcmread(SOURCE)
    ds = _write(tmp_path / "tv", ct_slice, Provenance("TV", 60))
    assert ds.SeriesDescription == "TV 60 views (simulated), RESEARCH"
    sentence = f"research reconstruction from a simulated 60-view scan (sparsect {__version__})"
    assert sentence in ds.ImageComments and sentence in ds.DerivationDescription
    assert "Not for diagnostic use" in ds.ImageComments
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"] and ds.BurnedInAnnotation == "NO"
    code = ds.DerivationCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("113963", "DCM",
                                                                              "Iterative Reconstruction")
    assert ds.SourceImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert ds.SoftwareVersions == f"sparsect {__version__}"
    (equipment,) = ds.ContributingEquipmentSequence  # sparsect synthesized the scan (PS3.3 C.12.1)
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109100"
    # a study of its own: same patient and frame of reference, no accession of the source's order
    assert ds.StudyInstanceUID == research_study_uid(src.StudyInstanceUID) != src.StudyInstanceUID
    assert ds.StudyDescription.startswith("Research reconstruction") and ds.StudyID == "RESEARCH"
    assert ds.AccessionNumber == "" and ds.StudyDate == src.StudyDate
    assert (ds.PatientName, ds.PatientID) == (src.PatientName, src.PatientID)
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    # ... that names the source study, series and instance it derives from
    (study,) = ds.StudiesContainingOtherReferencedInstancesSequence
    (series,) = study.ReferencedSeriesSequence
    assert study.StudyInstanceUID == src.StudyInstanceUID and series.SeriesInstanceUID == src.SeriesInstanceUID
    assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert "ReferencedSeriesSequence" not in ds
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID != src.SOPInstanceUID
    fbp = _write(tmp_path / "fbp", ct_slice, Provenance("FBP", 60))
    assert fbp.StudyInstanceUID == ds.StudyInstanceUID  # every research series of one source joins one study
    assert fbp.DerivationCodeSequence[0].CodeValue == "113962"  # Filtered Back Projection
    assert fbp.SeriesInstanceUID != ds.SeriesInstanceUID


def test_same_study_keeps_the_source_study(tmp_path, ct_slice):
    src = pydicom.dcmread(SOURCE)
    ds = _write(tmp_path, ct_slice, Provenance("SIRT", 12), same_study=True)
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.StudyDescription == src.StudyDescription
    assert ds.AccessionNumber == src.get("AccessionNumber", "")
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert "StudiesContainingOtherReferencedInstancesSequence" not in ds
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID != src.SOPInstanceUID
    assert "RESEARCH" in ds.SeriesDescription and "research reconstruction" in ds.ImageComments


def test_measured_scan_is_marked_with_its_views(tmp_path, measured_source):
    header = measured_source.dataset
    ds = _write(tmp_path / "sirt", measured_source, Provenance("SIRT", 30, 120))
    assert ds.SeriesDescription == "SIRT 30 of 120 measured views, RESEARCH"
    assert f"research reconstruction from 30 of 120 measured views (sparsect {__version__})" in ds.ImageComments
    assert ds.StudyInstanceUID == research_study_uid(header.StudyInstanceUID)
    assert ds.StudyDescription == "Research reconstruction: Measured fan-beam scan, 120 views"
    assert str(ds.PatientName) == "MEASURED^ANONYMOUS" and "SourceImageSequence" not in ds
    assert "ContributingEquipmentSequence" not in ds  # acquired data, nothing synthesized
    reference = _write(tmp_path / "ref", measured_source, Provenance("FBP reference", 120, 120))
    assert reference.DerivationCodeSequence[0].CodeValue == "113962"
    assert reference.StudyInstanceUID == ds.StudyInstanceUID


def test_anonymized_references_do_not_leak_the_source(tmp_path, ct_slice):
    src = pydicom.dcmread(SOURCE)
    (path,) = data.write_series(tmp_path, ct_slice.hu, ct_slice, Provenance("TV", 60), anonymize=True)
    raw = path.read_bytes()
    for uid in (src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID,
                research_study_uid(src.StudyInstanceUID)):
        assert uid.encode() not in raw, uid
    ds = pydicom.dcmread(path)
    assert ds.StudyDescription == RESEARCH_STUDY and "research reconstruction" in ds.ImageComments
    assert ds.StudiesContainingOtherReferencedInstancesSequence[0].StudyInstanceUID.startswith("2.25.")


def test_series_description_fits_64_characters_and_takes_the_fit_when_it_fits():
    assert Provenance("LRNN", 60, fit="LRNN, FBP warm start").series_description() == \
        "LRNN 60 views (simulated), RESEARCH: FBP warm start"
    long_fit = "LRNN, 3 seeds, FBP warm start, 128² grid first, ramp-weighted loss, blended with TV by frequency band"
    text = Provenance("LRNN", 60, 1200, fit=long_fit).series_description()
    assert text == "LRNN 60 of 1200 measured views, RESEARCH" and len(text) <= 64
    assert len(Provenance("X" * 80, 60).series_description()) == 64
    assert long_fit in Provenance("LRNN", 60, fit=long_fit).comments()


def test_cli_same_study_option(tmp_path):
    src = pydicom.dcmread(SOURCE)
    studies = {}
    for flag in ([], ["--same-study"]):
        out = tmp_path / ("same" if flag else "new")
        result = CliRunner().invoke(cli, ["reconstruct", SOURCE, "--size", "32", "--views", "8", "-m", "fbp",
                                          "--out", str(out), "--json", *flag])
        assert result.exit_code == 0, result.output
        ds = pydicom.dcmread(next(out.rglob("*.dcm")))
        assert ds.SeriesDescription == "FBP 8 views (simulated), RESEARCH"
        studies[bool(flag)] = ds.StudyInstanceUID
    assert studies == {False: research_study_uid(src.StudyInstanceUID), True: src.StudyInstanceUID}
    alone = CliRunner().invoke(cli, ["reconstruct", SOURCE, "--views", "8", "-m", "fbp", "--same-study"])
    assert alone.exit_code == 2 and "give --out" in alone.stderr
