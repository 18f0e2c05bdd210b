"""Reading CT DICOM: HU against an independent computation, folders with junk, uploads, errors.
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import warnings
import zipfile
from copy import deepcopy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.uid import CTImageStorage, generate_uid

from sparsect import data

CT_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.2"


def _header(path: str) -> pydicom.Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return None


def _all_ct_files() -> tuple[list[str], list[str]]:
    """(CT image files with pixel data, CT files without pixel data / localizers) in pydicom's data."""
    usable, unusable = [], []
    for path in get_testdata_files():
        if os.path.isdir(path):
            continue
        ds = _header(path)
        if ds is None:
            continue
        sop = str(ds.get("SOPClassUID", ""))
        if ds.get("Modality") != "CT" and not sop.startswith(CT_SOP_PREFIX):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            has_pixels = "PixelData" in pydicom.dcmread(path)
        localizer = "LOCALIZER" in [str(v).strip() for v in ds.get("ImageType", [])]
        (usable if has_pixels and not localizer else unusable).append(path)
    return usable, unusable


CT_FILES, CT_UNUSABLE = _all_ct_files()


def _rescale(ds: pydicom.Dataset, frame: int) -> tuple[float, float]:
    """Slope/intercept from the per-frame, then shared functional groups, then the top level."""
    for groups in (ds.get("PerFrameFunctionalGroupsSequence"), ds.get("SharedFunctionalGroupsSequence")):
        if not groups:
            continue
        group = groups[frame] if len(groups) > frame else groups[0]
        if "PixelValueTransformationSequence" in group:
            item = group.PixelValueTransformationSequence[0]
            return float(item.RescaleSlope), float(item.RescaleIntercept)
    return float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))


def expected_hu(path: str | Path) -> np.ndarray:
    """Independent HU: pixel_array * slope + intercept in float64; padding and < -1024 -> -1024."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        raw = ds.pixel_array.astype(np.float64)
    if raw.ndim == 2:
        raw = raw[None]
    out = np.empty_like(raw)
    for k in range(raw.shape[0]):
        slope, intercept = _rescale(ds, k)
        hu = raw[k] * slope + intercept
        if "PixelPaddingValue" in ds:
            lo = hi = int(ds.PixelPaddingValue)
            if "PixelPaddingRangeLimit" in ds:
                lo, hi = sorted((lo, int(ds.PixelPaddingRangeLimit)))
            hu[(raw[k] >= lo) & (raw[k] <= hi)] = -1024.0
        out[k] = np.where(hu < -1024.0, -1024.0, hu)
    return out


def test_ct_file_list_is_complete():
    names = {Path(p).name for p in CT_FILES}
    assert {"CT_small.dcm", "693_UNCI.dcm", "693_UNCR.dcm", "693_J2KR.dcm", "eCT_Supplemental.dcm"} <= names
    assert len(CT_FILES) >= 15


@pytest.mark.parametrize("path", CT_FILES, ids=lambda p: f"{Path(p).parent.name}/{Path(p).name}")
def test_every_ct_file_matches_independent_hu(path):
    result = data.scan(path)
    assert result.skipped == []
    assert len(result.series) == 1
    series = result.series[0]
    expected = expected_hu(path)
    assert series.hu.dtype == np.float32
    assert series.hu.ndim == 3 and series.hu.shape[1:] == expected.shape[1:]
    for k, frame in enumerate(series.frames):
        index = 0 if frame is None else frame - 1
        np.testing.assert_allclose(series.hu[k], expected[index], atol=1e-3)
    assert series.hu.min() >= -1024.0
    assert "PixelData" not in series.datasets[0]
    assert series.datasets[0].SOPInstanceUID == _header(path).SOPInstanceUID


@pytest.mark.parametrize("path", CT_UNUSABLE, ids=lambda p: f"{Path(p).parent.name}/{Path(p).name}")
def test_ct_files_without_pixels_or_localizers_are_skipped(path):
    result = data.scan(path)
    assert result.series == []
    assert len(result.skipped) == 1
    reason = result.skipped[0][1].lower()
    assert "pixel data" in reason or "localizer" in reason


def test_padding_out_of_fov_becomes_air():
    ds = data.load_slice(get_testdata_file("693_UNCR.dcm", download=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = pydicom.dcmread(get_testdata_file("693_UNCR.dcm", download=False)).pixel_array
    assert (raw == -2000).sum() > 1000  # the file really has padding
    assert np.all(ds.hu[raw == -2000] == data.AIR_HU)
    assert ds.hu.min() == -1024.0
    assert data.load_slice(get_testdata_file("693_J2KI.dcm", download=False)).hu.min() == -1024.0


def _ct_small() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def test_padding_range_limit(tmp_path):
    ds = _ct_small()
    raw = ds.pixel_array
    lo = int(np.percentile(raw, 20))
    ds.add_new(0x00280120, "SS", lo)  # PixelPaddingValue
    ds.add_new(0x00280121, "SS", lo + 40)  # PixelPaddingRangeLimit
    ds.save_as(tmp_path / "pad.dcm")
    hu = data.load_slice(tmp_path / "pad.dcm").hu
    mask = (raw >= lo) & (raw <= lo + 40)
    assert mask.sum() > 50
    assert np.all(hu[mask] == -1024.0)
    np.testing.assert_allclose(hu[~mask], raw[~mask] * 1.0 - 1024.0, atol=1e-3)


def test_enhanced_ct_per_frame_rescale(tmp_path):
    path = get_testdata_file("eCT_Supplemental.dcm", download=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.RescaleSlope = 2
    item.RescaleIntercept = -500
    item.RescaleType = "HU"
    ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence = [item]
    ds.save_as(tmp_path / "ect.dcm")
    series = data.load(tmp_path / "ect.dcm")
    raw = ds.pixel_array.astype(np.float64)
    assert len(series) == 2
    by_frame = {f: series.hu[k] for k, f in enumerate(series.frames)}
    np.testing.assert_allclose(by_frame[1], np.maximum(raw[0] - 1024, -1024), atol=1e-3)
    np.testing.assert_allclose(by_frame[2], np.maximum(raw[1] * 2 - 500, -1024), atol=1e-3)
    assert series.spacing == pytest.approx((0.388672, 0.388672))
    np.testing.assert_allclose(expected_hu(tmp_path / "ect.dcm")[1], by_frame[2], atol=1e-3)


def _relabel_as_ct(name: str, out: Path) -> pydicom.Dataset:
    """Copy of a (compressed) test file with Modality/SOP Class set to CT; pixel data untouched."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(get_testdata_file(name, download=False))
    ds.Modality = "CT"
    ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.save_as(out)
    return ds


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                  "JPGExtended.dcm", "JPEG-LL.dcm", "JPEGLSNearLossless_16.dcm",
                                  "emri_small_RLE.dcm", "MR_small_bigendian.dcm"])
def test_compressed_transfer_syntaxes_decode(tmp_path, name):
    """RLE, JPEG-LS, JPEG 2000, JPEG extended/lossless and big endian decode like pydicom does."""
    ds = _relabel_as_ct(name, tmp_path / "relabelled.dcm")
    series = data.load(tmp_path / "relabelled.dcm")
    expected = expected_hu(tmp_path / "relabelled.dcm")
    assert len(series) == expected.shape[0]
    for k, frame in enumerate(series.frames):
        np.testing.assert_allclose(series.hu[k], expected[0 if frame is None else frame - 1], atol=1e-3)
    assert series.meta["transfer_syntax"] == ds.file_meta.TransferSyntaxUID.name


def test_undecodable_pixel_data_is_reported(tmp_path):
    """JPEG-lossy.dcm (12-bit JPEG extended with a bad marker) cannot be decoded by pydicom either."""
    _relabel_as_ct("JPEG-lossy.dcm", tmp_path / "bad.dcm")
    with pytest.raises(data.DicomError) as info:
        data.load(tmp_path / "bad.dcm")
    assert "JPEG Extended" in str(info.value) and "Supported" not in str(info.value)  # said once, in --help
    assert "JPEG Extended" in data.scan(tmp_path).skipped[0][1]


def _write_ct_copy(ds: pydicom.Dataset, path: Path, z: float | None, instance: int, series_uid: str,
                   image_type: list[str] | None = None) -> None:
    copy = deepcopy(ds)
    copy.SOPInstanceUID = generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    copy.SeriesInstanceUID = series_uid
    copy.InstanceNumber = instance
    if z is None:
        del copy.ImagePositionPatient
    else:
        copy.ImagePositionPatient = [-158.1, -179.0, z]
    if image_type is not None:
        copy.ImageType = image_type
    copy.save_as(path)


@pytest.fixture
def mixed_folder(tmp_path) -> tuple[Path, dict[str, str]]:
    """3 CT slices (shuffled names) + junk; returns folder and {junk file name: expected reason word}."""
    root = tmp_path / "study"
    (root / "sub" / "deeper").mkdir(parents=True)
    ds = _ct_small()
    uid = generate_uid()
    _write_ct_copy(ds, root / "b.dcm", 10.0, 3, uid)
    _write_ct_copy(ds, root / "sub" / "a.dcm", -5.0, 1, uid)
    _write_ct_copy(ds, root / "sub" / "deeper" / "c", 2.5, 2, uid)
    _write_ct_copy(ds, root / "scout.dcm", 0.0, 9, uid, ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    (root / "notes.txt").write_text("patient notes, not DICOM\n")
    full = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (root / "truncated.dcm").write_bytes(full[: len(full) // 2])
    shutil.copy(get_testdata_file("MR_small.dcm"), root / "mr.dcm")
    shutil.copy(get_testdata_file("DICOMDIR"), root / "DICOMDIR")
    shutil.copy(get_testdata_file("rtplan.dcm"), root / "sub" / "plan.dcm")
    junk = {"scout.dcm": "localizer", "notes.txt": "not a dicom", "truncated.dcm": "truncated",
            "mr.dcm": "mr", "DICOMDIR": "dicomdir", "plan.dcm": "rtplan"}
    return root, junk


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_mixed_folder_loads_ct_and_reports_skipped(mixed_folder):
    root, junk = mixed_folder
    before = _tree_hash(root)
    result = data.scan(root)
    assert _tree_hash(root) == before
    assert len(result.series) == 1
    series = result.series[0]
    assert series.hu.shape == (3, 128, 128)
    np.testing.assert_allclose(series.positions, [-5.0, 2.5, 10.0])
    assert [Path(s).name for s in series.sources] == ["a.dcm", "c", "b.dcm"]
    assert series.spacing == pytest.approx((0.661468, 0.661468))
    skipped = {Path(name).name: reason.lower() for name, reason in result.skipped}
    assert set(skipped) == set(junk)
    for name, word in junk.items():
        assert word in skipped[name], (name, skipped[name])
    for reason in skipped.values():
        assert len(reason) > 15
    loaded = data.load(root)
    np.testing.assert_array_equal(loaded.hu, series.hu)
    middle = data.load_slice(root)
    np.testing.assert_array_equal(middle.hu, series.hu[1])
    assert middle.meta["modality"] == "CT" and middle.meta["kvp"] == 120.0
    assert "PatientName" not in middle.meta and "patient_name" not in middle.meta
    np.testing.assert_array_equal(data.load_slice(root, index=0).hu, series.hu[0])


def test_instance_number_fallback_ordering(tmp_path):
    ds = _ct_small()
    uid = generate_uid()
    for name, instance in (("x.dcm", 2), ("y.dcm", 3), ("z.dcm", 1)):
        _write_ct_copy(ds, tmp_path / name, None, instance, uid)
    series = data.load(tmp_path)
    assert [Path(s).name for s in series.sources] == ["z.dcm", "x.dcm", "y.dcm"]


def test_position_uses_slice_normal(tmp_path):
    """With a sagittal orientation the order follows -x (the slice normal), not z."""
    ds = _ct_small()
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    uid = generate_uid()
    for name, x, z in (("p.dcm", 3.0, 0.0), ("q.dcm", 1.0, 50.0), ("r.dcm", 2.0, -50.0)):
        copy = deepcopy(ds)
        copy.SOPInstanceUID = generate_uid()
        copy.SeriesInstanceUID = uid
        copy.ImagePositionPatient = [x, 0.0, z]
        copy.save_as(tmp_path / name)
    series = data.load(tmp_path)
    # normal = row x col = (0, 1, 0) x (0, 0, -1) = (-1, 0, 0): position = -x
    assert [Path(s).name for s in series.sources] == ["p.dcm", "r.dcm", "q.dcm"]
    np.testing.assert_allclose(series.positions, [-3.0, -2.0, -1.0])


def _zip_bytes(root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, f"upload/{path.relative_to(root)}")
    return buffer.getvalue()


def test_scan_bytes_zip_and_files_match_disk(mixed_folder):
    root, junk = mixed_folder
    on_disk = data.scan(root)
    from_zip = data.scan_bytes([("study.zip", _zip_bytes(root))])
    assert len(from_zip.series) == 1
    np.testing.assert_array_equal(from_zip.series[0].hu, on_disk.series[0].hu)
    assert {Path(n).name for n, _ in from_zip.skipped} == set(junk)
    assert all(n.startswith("study.zip/upload/") for n, _ in from_zip.skipped)

    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            handle = io.BytesIO(path.read_bytes())
            handle.name = path.name
            files.append(handle)
    from_files = data.scan_bytes(files)
    np.testing.assert_array_equal(from_files.series[0].hu, on_disk.series[0].hu)
    assert all(f.tell() == 0 for f in files)
    one = data.load_slice_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    np.testing.assert_allclose(one.hu, expected_hu(get_testdata_file("CT_small.dcm"))[0])
    zipped = data.load_bytes(_zip_bytes(root))
    assert len(zipped) == 3


def test_ambiguous_series_names_each(tmp_path):
    ds = _ct_small()
    for k, desc in enumerate(("Soft tissue", "Bone")):
        copy = deepcopy(ds)
        copy.SeriesInstanceUID = f"1.2.3.4.{k + 1}"
        copy.SOPInstanceUID = generate_uid()
        copy.SeriesDescription = desc
        copy.save_as(tmp_path / f"{k}.dcm")
    with pytest.raises(data.AmbiguousSeriesError) as info:
        data.load(tmp_path)
    message = str(info.value)
    for text in ("1.2.3.4.1", "1.2.3.4.2", "Soft tissue", "Bone"):
        assert text in message
    assert data.load(tmp_path, series_uid="1.2.3.4.2").description == "Bone"
    assert len(data.scan(tmp_path).series) == 2


def test_duplicate_instances_are_skipped(tmp_path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "a.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "b.dcm")
    result = data.scan(tmp_path)
    assert len(result.series[0]) == 1
    assert len(result.skipped) == 1 and "duplicate" in result.skipped[0][1]


def test_error_not_dicom(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 300)
    with pytest.raises(data.NotDicomError) as info:
        data.load_slice(path)
    assert "not a DICOM file" in str(info.value) and "Supported" not in str(info.value)
    assert isinstance(info.value, data.DicomError)


def test_error_mr_file():
    with pytest.raises(data.NotCTError) as info:
        data.load_slice(get_testdata_file("MR_small.dcm"))
    assert "MR" in str(info.value) and "CT" in str(info.value)


def test_error_missing_path(tmp_path):
    missing = tmp_path / "nope" / "x.dcm"
    for func in (data.scan, data.load, data.load_slice):
        with pytest.raises(data.DicomNotFoundError) as info:
            func(missing)
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, data.DicomError)
        assert str(missing) in str(info.value)


def test_error_single_unusable_files(tmp_path, mixed_folder):
    root, _ = mixed_folder
    with pytest.raises(data.UnsupportedDicomError, match="localizer"):
        data.load(root / "scout.dcm")
    with pytest.raises(data.CorruptDicomError, match="truncated"):
        data.load(root / "truncated.dcm")
    with pytest.raises(data.NotCTError, match="DICOMDIR"):
        data.load(root / "DICOMDIR")
    with pytest.raises(data.NotCTError, match="RTPLAN"):
        data.load(root / "sub" / "plan.dcm")
    with pytest.raises(data.NoPixelDataError, match="pixel data"):
        data.load(get_testdata_file("rtplan.dcm").replace("rtplan.dcm", "dicomdirtests/TINY_ALPHA/PT000000/"
                                                          "ST000000/SE000000/IM000000"))
    with pytest.raises(data.NotCTError):
        data.load_bytes([("mr.dcm", (root / "mr.dcm").read_bytes())])
    with pytest.raises(data.UnsupportedDicomError, match="colour"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rgb = pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))
        rgb.Modality = "CT"
        rgb.save_as(tmp_path / "rgb.dcm")
        data.load(tmp_path / "rgb.dcm")


def test_error_no_ct_in_folder(tmp_path):
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(data.NoCTSeriesError) as info:
        data.load(tmp_path)
    assert "mr.dcm" in str(info.value) and "readme.txt" in str(info.value)
    with pytest.raises(data.NoCTSeriesError):
        data.load_bytes([])


def test_slice_index_bounds():
    series = data.load(get_testdata_file("eCT_Supplemental.dcm", download=False))
    assert series.slice().frame in (1, 2)
    with pytest.raises(IndexError):
        series.slice(5)
    np.testing.assert_array_equal(series.slice(-1).hu, series.hu[-1])


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.3, 0.5, 0.9, 0.99])
def test_a_truncated_ct_file_is_reported_as_truncated(fraction):
    full = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    cut = full[: int(len(full) * fraction)]
    with pytest.raises(data.DicomError) as info:
        data.load_slice_bytes([("cut.dcm", cut)])
    assert "truncated or damaged" in str(info.value) and "without pixel data" not in str(info.value)
    assert "truncated or damaged" in data.scan_bytes([("cut.dcm", cut)]).skipped[0][1]


def test_skip_reasons_do_not_repeat_the_supported_input_paragraph(mixed_folder):
    from sparsect.data.errors import SUPPORTED

    root, _ = mixed_folder
    reasons = [reason for _, reason in data.scan(root).skipped]
    assert len(reasons) == 6 and not [r for r in reasons if SUPPORTED in r or "Supported input" in r]
    assert max(map(len, reasons)) < 200
    (root / "b.dcm").unlink()
    (root / "sub" / "a.dcm").unlink()
    (root / "sub" / "deeper" / "c").unlink()
    with pytest.raises(data.NoCTSeriesError) as info:
        data.load(root)
    assert "Supported input" not in str(info.value) and "Usable input" in str(info.value)
