"""Writing derived CT series: round trip, geometry, dciodvfy validation, anonymisation, atomicity."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import stat
import subprocess
from copy import deepcopy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from sparsect import data


def _digest(ct) -> str:
    h = hashlib.sha256(np.ascontiguousarray(ct.hu).tobytes())
    for ds in getattr(ct, "datasets", [getattr(ct, "dataset", None)]):
        if ds is not None:
            h.update(repr(ds).encode())
    return h.hexdigest()


@pytest.fixture
def ct_slice():
    return data.load_slice(get_testdata_file("CT_small.dcm"))


@pytest.fixture
def ct_series(tmp_path):
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    uid = generate_uid()
    folder = tmp_path / "src"
    folder.mkdir()
    for k, z in enumerate((30.0, 0.0, 15.0)):
        ds = deepcopy(src)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = uid
        ds.ImagePositionPatient = [-158.0, -179.0, z]
        ds.save_as(folder / f"{k}.dcm")
    return data.load(folder)


def test_round_trip_slice(tmp_path, ct_slice):
    before = _digest(ct_slice)
    image = ct_slice.hu + np.float32(0.3)  # non-integer HU
    image_copy = image.copy()
    paths = data.write_series(tmp_path / "out", image, ct_slice, "LRNN 60 views")
    assert _digest(ct_slice) == before and np.array_equal(image, image_copy)
    assert len(paths) == 1 and paths[0].exists() and paths[0].parent == tmp_path / "out"
    ds = pydicom.dcmread(paths[0])
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(hu - image).max() <= 0.5
    back = data.load(tmp_path / "out")
    assert np.abs(back.hu[0] - image).max() <= 0.5
    assert back.spacing == pytest.approx(ct_slice.spacing)
    src = ct_slice.dataset
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID != src.SOPInstanceUID
    # a research study of its own by default (tests/test_dicom_marking.py), same patient and frame of reference
    assert ds.StudyInstanceUID != src.StudyInstanceUID and ds.PatientName == src.PatientName
    assert ds.PatientID == src.PatientID and ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SeriesDescription == "LRNN 60 views, RESEARCH" and "LRNN 60 views" in ds.DerivationDescription
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert ds.ReferencedImageSequence[0].ReferencedSOPClassUID == src.SOPClassUID
    assert ds.PixelRepresentation == 1 and ds.BitsAllocated == 16
    assert float(ds.WindowWidth) > 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == [paths[0].name]  # no temp files left


def test_round_trip_series_and_random_values(tmp_path, ct_series):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1024, 3000, size=ct_series.hu.shape).astype(np.float32)
    paths = data.write_series(tmp_path / "out", images, ct_series, "WIRE 30 views")
    assert len(paths) == 3
    back = data.load(tmp_path / "out")
    np.testing.assert_allclose(back.hu, images, atol=0.5)
    np.testing.assert_allclose(back.positions, ct_series.positions, atol=1e-4)
    refs = [pydicom.dcmread(p).SourceImageSequence[0].ReferencedSOPInstanceUID for p in paths]
    assert refs == [ds.SOPInstanceUID for ds in ct_series.datasets]
    assert len({pydicom.dcmread(p).SeriesInstanceUID for p in paths}) == 1
    with pytest.raises(ValueError):
        data.write_series(tmp_path / "bad", images[:2], ct_series, "x")
    with pytest.raises(ValueError):
        data.write_series(tmp_path / "bad", images[0] * np.nan, ct_series.slice(0), "x")


def test_resized_output_keeps_field_of_view(tmp_path, ct_slice):
    small = ct_slice.hu[::2, ::2]
    path = data.write_series(tmp_path, small, ct_slice, "half")[0]
    ds, src = pydicom.dcmread(path), ct_slice.dataset
    assert (ds.Rows, ds.Columns) == (64, 64)
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([2 * float(v) for v in src.PixelSpacing])

    def corner(d):  # outer corner of the first pixel
        ipp, sp = np.array(d.ImagePositionPatient, float), [float(v) for v in d.PixelSpacing]
        iop = np.array(d.ImageOrientationPatient, float)
        return ipp - 0.5 * sp[1] * iop[:3] - 0.5 * sp[0] * iop[3:]

    np.testing.assert_allclose(corner(ds), corner(src), atol=1e-4)


def _dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("sample", ["ct_small", "head_693", "shepp_logan"])
@pytest.mark.parametrize("anonymize", [False, True])
def test_dciodvfy_has_no_errors(tmp_path, sample, anonymize):
    ct = data.load_sample(sample, size=64)
    path = data.write_series(tmp_path, ct.hu, ct, f"{sample} test", anonymize=anonymize)[0]
    assert _dciodvfy_errors(path) == []


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_check_can_fail(tmp_path, ct_slice):
    path = data.write_series(tmp_path, ct_slice.hu, ct_slice, "x")[0]
    ds = pydicom.dcmread(path)
    del ds.SOPClassUID  # a type 1 attribute
    ds.save_as(tmp_path / "broken.dcm")
    assert _dciodvfy_errors(tmp_path / "broken.dcm")


def test_enhanced_ct_reference(tmp_path):
    series = data.load(get_testdata_file("eCT_Supplemental.dcm", download=False))
    paths = data.write_series(tmp_path, series.hu, series, "from enhanced")
    items = [pydicom.dcmread(p).SourceImageSequence[0] for p in paths]
    assert sorted(int(i.ReferencedFrameNumber) for i in items) == [1, 2]
    back = data.load(tmp_path)
    np.testing.assert_allclose(back.hu, series.hu, atol=0.5)
    assert back.spacing == pytest.approx(series.spacing)


def test_anonymize(tmp_path, ct_series):
    src = ct_series.datasets[0]
    before = _digest(ct_series)
    paths = data.write_series(tmp_path / "out", ct_series.hu, ct_series, "anon", anonymize=True)
    assert _digest(ct_series) == before
    out = [pydicom.dcmread(p) for p in paths]
    for ds in out:
        assert str(ds.PatientName) != str(src.PatientName) and ds.PatientID != src.PatientID
        assert ds.get("PatientBirthDate", "") == "" and ds.get("StudyDate", "") == ""
        assert ds.StudyDescription == data.dicom_marking.RESEARCH_STUDY and "ContentDate" not in ds
        assert ds.StudyInstanceUID != src.StudyInstanceUID
        assert ds.FrameOfReferenceUID != src.FrameOfReferenceUID
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        ref = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        assert ref not in {d.SOPInstanceUID for d in ct_series.datasets}
    assert len({ds.StudyInstanceUID for ds in out}) == 1 and len({ds.PatientID for ds in out}) == 1
    secrets = [str(src.PatientName), src.PatientID, src.StudyInstanceUID, src.SOPInstanceUID,
               src.FrameOfReferenceUID, str(src.get("InstitutionName", "")), str(src.PatientBirthDate)]
    for p in paths:
        raw = p.read_bytes()
        for secret in filter(None, secrets):
            assert secret.encode() not in raw, secret
    back = data.load(tmp_path / "out")
    np.testing.assert_allclose(back.hu, ct_series.hu, atol=0.5)
    again = data.write_series(tmp_path / "2", ct_series.hu, ct_series, "anon", anonymize=True)
    assert pydicom.dcmread(again[0]).StudyInstanceUID != out[0].StudyInstanceUID  # a fresh key per call


def _hmac_uid(key: bytes, uid: str) -> str:
    return "2.25." + str(int.from_bytes(hmac.new(key, b"uid\0" + uid.encode(), hashlib.sha256).digest()[:16], "big"))


def test_one_anonymizer_gives_every_series_of_a_study_one_identity(tmp_path, ct_series):
    src = ct_series.datasets[0]
    key = bytes(range(32))
    shared = data.Anonymizer(key)
    first = data.write_series(tmp_path / "fbp", ct_series.hu, ct_series, "FBP", anonymize=shared, series_number=1001)
    second = data.write_series(tmp_path / "tv", ct_series.hu, ct_series, "TV", anonymize=data.Anonymizer(key),
                               series_number=1002)
    out = [pydicom.dcmread(p) for p in first + second]
    patient = "ANON-" + hmac.new(key, b"patient\0" + src.PatientID.encode(), hashlib.sha256).hexdigest()[:12].upper()
    assert {ds.PatientID for ds in out} == {str(ds.PatientName) for ds in out} == {patient}
    research = data.dicom_marking.research_study_uid(src.StudyInstanceUID)
    assert {ds.StudyInstanceUID for ds in out} == {_hmac_uid(key, research)}
    assert {ds.FrameOfReferenceUID for ds in out} == {_hmac_uid(key, src.FrameOfReferenceUID)}
    assert {ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in out} == {
        _hmac_uid(key, d.SOPInstanceUID) for d in ct_series.datasets}
    assert sorted({int(ds.SeriesNumber) for ds in out}) == [1001, 1002]
    assert all(len(ds.StudyInstanceUID) <= 64 for ds in out)
    other = pydicom.dcmread(data.write_series(tmp_path / "o", ct_series.hu, ct_series, "x",
                                              anonymize=data.Anonymizer(bytes(32)))[0])
    assert other.PatientID != patient and other.StudyInstanceUID != out[0].StudyInstanceUID
    same = pydicom.dcmread(data.write_series(tmp_path / "s", ct_series.hu, ct_series, "x", anonymize=shared,
                                             same_study=True)[0])
    assert same.StudyInstanceUID == _hmac_uid(key, src.StudyInstanceUID) and same.PatientID == patient


def test_key_file_is_private_created_once_and_shared(tmp_path):
    from sparsect.data.anonymize import load_or_create_key

    path = tmp_path / "state" / "pseudonym.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and load_or_create_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and list(path.parent.iterdir()) == [path]
    path.write_text("not hex\n")
    with pytest.raises(ValueError, match="not a pseudonym key"):
        load_or_create_key(path)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(tmp_path, ct_slice, umask):
    from sparsect.data.atomic import atomic_write

    pacs = object.__new__(data.DicomWeb)  # no server: retrieve() gives one instance, pull() writes it
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pacs.retrieve = lambda study_uid, series_uid=None: [source]
    old = os.umask(umask)
    try:
        written = [*data.write_series(tmp_path / "dicom", ct_slice.hu, ct_slice, "x"),
                   atomic_write(tmp_path / "plain.bin", b"payload"), *pacs.pull("1.2.3", tmp_path / "pulled")]
        with open(tmp_path / "reference.bin", "wb") as stream:  # what a plain open() gives under this umask
            stream.write(b"x")
    finally:
        os.umask(old)
    assert oct(0o666 & ~umask) == oct(stat.S_IMODE((tmp_path / "reference.bin").stat().st_mode))
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {oct(0o666 & ~umask)}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    assert [p.name for p in (tmp_path / "pulled").iterdir()] == [f"{source.SOPInstanceUID}.dcm"]
    assert data.load(tmp_path / "pulled").uid == source.SeriesInstanceUID


def test_atomic_write_leaves_the_old_file_on_error(tmp_path):
    from sparsect.data.atomic import atomic_open

    target = tmp_path / "f.txt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as stream:
        stream.write(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


def test_failed_write_leaves_no_files(tmp_path, ct_slice, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pydicom, "dcmwrite", boom)
    with pytest.raises(OSError, match="disk full"):
        data.write_series(tmp_path, ct_slice.hu, ct_slice, "x")
    assert list(tmp_path.iterdir()) == []
