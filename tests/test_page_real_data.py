"""The page with real data: "Load from PACS" and "Send to PACS" against a real Orthanc (fixture in conftest.py),
and "Measured scan" on an uploaded sinogram."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sparsect import data
from sparsect.reconstruct import registry

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "page" / "main.py")


def _pacs_config(tmp_path, monkeypatch, endpoints: list[dict]) -> None:
    """Write ``endpoints`` as the operator's TOML configuration and point the page at it (no SPARSECT_DICOMWEB_*
    variables: the page uses only what the configuration names)."""
    lines = []
    for endpoint in endpoints:
        lines.append("[[pacs]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in endpoint.items()]
    (tmp_path / "pacs.toml").write_text("\n".join(lines) + "\n")
    for name in ("SPARSECT_DICOMWEB_USER", "SPARSECT_DICOMWEB_PASSWORD", "SPARSECT_DICOMWEB_TOKEN",
                 "SPARSECT_PACS_URL", "SPARSECT_PAGE_PASSWORD", "SPARSECT_PAGE_PASSWORD_HASH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPARSECT_PACS_CONFIG", str(tmp_path / "pacs.toml"))


def _orthanc_endpoint(orthanc, monkeypatch, name: str, allow_send: bool) -> dict:
    monkeypatch.setenv("TEST_PACS_USER", orthanc.user)
    monkeypatch.setenv("TEST_PACS_PASSWORD", orthanc.password)
    return {"name": name, "url": orthanc.dicomweb, "user_env": "TEST_PACS_USER", "password_env": "TEST_PACS_PASSWORD",
            "allow_send": allow_send}


def _load(at, endpoint: str, patient: str):
    at.sidebar.radio(key="source").set_value("Load from PACS").run()
    at.sidebar.selectbox(key="pacs_endpoint").set_value(endpoint).run()
    at.sidebar.text_input(key="pacs_patient").set_value(patient)
    at.sidebar.button(key="pacs_search").click().run()
    assert not at.exception and not at.sidebar.error, (at.exception, [e.value for e in at.sidebar.error])
    assert patient in at.sidebar.selectbox(key="pacs_study").format_func(0)
    at.sidebar.button(key="pacs_load").click().run()
    assert not at.exception and not at.sidebar.error
    for method in registry.METHODS:  # FBP alone
        box = at.sidebar.checkbox(key=f"use_{method}")
        box.check() if method == "fbp" else box.uncheck()
    at.sidebar.button(key="run").click().run()
    assert not at.exception, at.exception


def test_load_from_pacs_reconstruct_and_send_back(orthanc, make_ct_series, monkeypatch, tmp_path, caplog):
    from streamlit.testing.v1 import AppTest

    _pacs_config(tmp_path, monkeypatch, [_orthanc_endpoint(orthanc, monkeypatch, "Read only", False),
                                         _orthanc_endpoint(orthanc, monkeypatch, "Orthanc", True)])
    caplog.set_level(logging.INFO, logger="sparsect.audit")
    source = make_ct_series(1)
    pacs = data.DicomWeb(orthanc.dicomweb, data.Credentials(orthanc.user, orthanc.password))
    pacs.store(source)
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    assert not [w for w in at.sidebar.text_input if "URL" in w.label]  # no address typed by visitors any more
    _load(at, "Read only", source[0].PatientID)
    assert not [b for b in at.button if b.key == "pacs_send"]  # the operator did not allow sending there
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    _load(at, "Orthanc", source[0].PatientID)
    at.button(key="pacs_send").click().run()
    assert not at.exception and "Stored 1 image(s) in 1 series" in " ".join(s.value for s in at.success)
    study = source[0].StudyInstanceUID
    derived = [(found["study_uid"], s) for found in pacs.search_studies(patient_id=source[0].PatientID)
               for s in pacs.search_series(found["study_uid"]) if s["series_uid"] != source[0].SeriesInstanceUID]
    assert [s["instances"] for _, s in derived] == [1]  # in the source's study or a research study of the patient
    (stored,) = pacs.retrieve(derived[0][0], derived[0][1]["series_uid"])
    assert stored.SourceImageSequence[0].ReferencedSOPInstanceUID == source[0].SOPInstanceUID
    audit = [r.getMessage() for r in caplog.records if r.name == "sparsect.audit"]
    events = [line.split("event=")[1].split()[0] for line in audit]
    assert events == ["pacs.search", "pacs.retrieve", "pacs.search", "pacs.retrieve", "pacs.send"], audit
    assert all(f"study={study}" in line for line in audit if "event=pacs.search" not in line)
    assert "endpoint=Orthanc" in audit[-1] and "by=patient_id" in audit[0]
    text = "\n".join(audit)
    assert source[0].PatientID not in text and str(source[0].PatientName) not in text
    assert orthanc.password not in text and "ACC-4711" not in text


def test_pacs_errors_show_one_line(orthanc, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    endpoint = _orthanc_endpoint(orthanc, monkeypatch, "Orthanc", False)
    monkeypatch.setenv("TEST_PACS_PASSWORD", "not-the-password")
    _pacs_config(tmp_path, monkeypatch, [endpoint])
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    at.sidebar.radio(key="source").set_value("Load from PACS").run()
    at.sidebar.text_input(key="pacs_patient").set_value("ANYONE")
    at.sidebar.button(key="pacs_search").click().run()
    assert not at.exception
    (error,) = at.sidebar.error
    assert "HTTP 401 Unauthorized" in error.value and "\n" not in error.value and "'Orthanc'" in error.value
    assert orthanc.dicomweb not in error.value and "not-the-password" not in error.value


def test_no_pacs_configured_means_no_pacs_source(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    _pacs_config(tmp_path, monkeypatch, [])
    monkeypatch.delenv("SPARSECT_PACS_CONFIG")
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    assert not at.exception and "Load from PACS" not in at.sidebar.radio(key="source").options


def test_no_page_action_sends_credentials_elsewhere(monkeypatch, tmp_path):
    """A recording server gets no credentials from the page: not when a visitor plants an address in the session
    (the old URL field's key), not when the configured endpoint redirects to it."""
    from http_recorder import recorder
    from streamlit.testing.v1 import AppTest

    with recorder() as elsewhere, recorder() as endpoint:
        endpoint.redirect = elsewhere.url
        monkeypatch.setenv("TEST_PACS_USER", "ana")
        monkeypatch.setenv("TEST_PACS_PASSWORD", "hunter2")
        _pacs_config(tmp_path, monkeypatch, [{"name": "Redirecting", "url": f"{endpoint.url}/dicom-web",
                                              "user_env": "TEST_PACS_USER", "password_env": "TEST_PACS_PASSWORD"}])
        at = AppTest.from_file(PAGE, default_timeout=90)
        at.session_state["pacs_url"] = f"{elsewhere.url}/dicom-web"
        at.run()
        at.sidebar.radio(key="source").set_value("Load from PACS").run()
        at.sidebar.text_input(key="pacs_accession").set_value("ACC-1")
        at.sidebar.button(key="pacs_search").click().run()
        assert not at.exception
        (error,) = at.sidebar.error
        assert "redirected to another origin" in error.value
        assert endpoint.authorized() == [endpoint.requests[0][1]]  # the endpoint itself did get them
        assert elsewhere.requests == []


def test_measured_scan_upload_runs_against_fbp_of_all_views(tmp_path):
    """The page's measured-scan mode (app/page/measured_mode.py) on an uploaded .npz with a geometry JSON."""
    import json

    import numpy as np
    import torch
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize
    from streamlit.testing.v1 import AppTest

    from sparsect.operators import ParallelBeam, Radon

    mu = (resize(shepp_logan_phantom(), (64, 64), order=1, anti_aliasing=True) * 0.02).astype(np.float32)
    geometry = ParallelBeam(np.arange(120) * np.pi / 120, 64, 1.0, 64)
    sinogram = (Radon(geometry)(torch.from_numpy(mu).double()) * 0.5).numpy()
    np.savez(tmp_path / "scan.npz", sinogram=sinogram, angles=geometry.angles.numpy())
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    at.sidebar.radio(key="source").set_value("Measured scan").run()
    at.sidebar.file_uploader(key="measured_scan").set_value(
        ("scan.npz", (tmp_path / "scan.npz").read_bytes(), "application/octet-stream"))
    at.sidebar.file_uploader(key="measured_geometry").set_value(
        ("g.json", json.dumps({"beam": "parallel", "detector_pixel_mm": 0.5}).encode(), "application/json")).run()
    assert not at.exception and not at.sidebar.error, (at.exception, at.sidebar.error)
    at.sidebar.slider(key="measured_views").set_value(30)
    at.sidebar.select_slider(key="measured_size").set_value(64).run()
    at.sidebar.button(key="measured_run").click().run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "PSNR (dB)" in d.value.columns)
    assert list(table.index) == ["FBP", "SIRT"] and (table["PSNR (dB)"] > 20).all()
    assert "against FBP of all 120 measured views" in " ".join(c.value for c in at.caption)


def test_measured_tiff_stack_upload_with_a_detector_row():
    """The measured-scan mode on an uploaded TIFF stack (one image per view, flat and dark fields) whose
    middle detector row saw the phantom; the run goes through the background job (measured_job.py)."""
    import io
    import json

    import numpy as np
    import tifffile
    import torch
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize
    from streamlit.testing.v1 import AppTest

    from sparsect.operators import ParallelBeam, Radon

    mu = (resize(shepp_logan_phantom(), (64, 64), order=1, anti_aliasing=True) * 0.02).astype(np.float32)
    angles = np.arange(120) * np.pi / 120
    sinogram = (Radon(ParallelBeam(angles, 64, 1.0, 64))(torch.from_numpy(mu).double()) * 0.5).numpy()

    def tiff(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.round(image).astype(np.uint16))
        return buffer.getvalue()

    flat = np.full((5, 64), 30000.0)
    views = [(f"p{i}.tif", tiff(np.where(np.arange(5)[:, None] == 2, 30000.0 * np.exp(-line), 30000.0)),
              "image/tiff") for i, line in enumerate(sinogram)]
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    at.sidebar.radio(key="source").set_value("Measured scan").run()
    at.sidebar.radio(key="measured_kind").set_value("TIFF stack").run()
    assert not at.exception and "TIFF stack" in " ".join(i.value for i in at.info)
    at.sidebar.file_uploader(key="measured_tiffs").set_value([*views, ("flat.tif", tiff(flat), "image/tiff")])
    geometry = {"beam": "parallel", "detector_pixel_mm": 0.5, "angles_deg": np.degrees(angles).tolist()}
    at.sidebar.file_uploader(key="measured_geometry").set_value(
        ("g.json", json.dumps(geometry).encode(), "application/json")).run()
    assert not at.exception and not at.sidebar.error, (at.exception, [e.value for e in at.sidebar.error])
    assert at.sidebar.slider(key="measured_row").value == 2  # the middle row by default
    at.sidebar.slider(key="measured_views").set_value(30)
    at.sidebar.select_slider(key="measured_size").set_value(64).run()
    at.sidebar.button(key="measured_run").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    table = next(d.value for d in at.dataframe if "PSNR (dB)" in d.value.columns)
    assert list(table.index) == ["FBP", "SIRT"] and (table["PSNR (dB)"] > 20).all()
    job = at.session_state["measured_job"][1]  # the run went through the background job, with progress
    assert [p.status for p in job.progress.values()] == ["done"] * 3 and list(job.progress)[0] == "reference"
    assert "121 TIFF files: 30 of 120 measured views" in " ".join(c.value for c in at.caption)
    at.sidebar.slider(key="measured_row").set_value(0).run()  # a row that saw nothing: the result is not shown
    assert "Press **Run**" in " ".join(i.value for i in at.info)
