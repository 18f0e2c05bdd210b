"""The page with real data: "Load from PACS" and "Send to PACS" against a real Orthanc (fixture in conftest.py),
and "Measured scan" on an uploaded sinogram."""

from __future__ import annotations

from pathlib import Path

from sparsect import data

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "page" / "main.py")


def test_load_from_pacs_reconstruct_and_send_back(orthanc, make_ct_series, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SPARSECT_DICOMWEB_USER", orthanc.user)
    monkeypatch.setenv("SPARSECT_DICOMWEB_PASSWORD", orthanc.password)
    source = make_ct_series(1)
    pacs = data.DicomWeb(orthanc.dicomweb)
    pacs.store(source)
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    at.sidebar.radio(key="source").set_value("Load from PACS").run()
    at.sidebar.text_input(key="pacs_url").set_value(orthanc.dicomweb).run()
    at.sidebar.text_input(key="pacs_patient").set_value(source[0].PatientID)
    at.sidebar.button(key="pacs_search").click().run()
    assert not at.exception and not at.sidebar.error, (at.exception, at.sidebar.error)
    assert source[0].PatientID in at.sidebar.selectbox(key="pacs_study").format_func(0)
    at.sidebar.button(key="pacs_load").click().run()
    assert not at.exception and not at.sidebar.error
    at.sidebar.checkbox(key="use_cgls").uncheck()
    at.sidebar.checkbox(key="use_lrnn").uncheck()
    at.sidebar.button(key="run").click().run()
    assert not at.exception, at.exception
    at.button(key="pacs_send").click().run()
    assert not at.exception and "Stored 1 image(s) in 1 series" in " ".join(s.value for s in at.success)
    study = source[0].StudyInstanceUID
    derived = [s for s in pacs.search_series(study) if s["series_uid"] != source[0].SeriesInstanceUID]
    assert [s["instances"] for s in derived] == [1]
    (stored,) = pacs.retrieve(study, derived[0]["series_uid"])
    assert stored.SourceImageSequence[0].ReferencedSOPInstanceUID == source[0].SOPInstanceUID


def test_pacs_errors_show_one_line(orthanc, monkeypatch):
    from streamlit.testing.v1 import AppTest

    for name in ("SPARSECT_DICOMWEB_USER", "SPARSECT_DICOMWEB_PASSWORD", "SPARSECT_DICOMWEB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.run()
    at.sidebar.radio(key="source").set_value("Load from PACS").run()
    at.sidebar.text_input(key="pacs_url").set_value(orthanc.dicomweb).run()
    at.sidebar.text_input(key="pacs_patient").set_value("ANYONE")
    at.sidebar.button(key="pacs_search").click().run()
    assert not at.exception
    (error,) = at.sidebar.error
    assert "HTTP 401 Unauthorized" in error.value and "\n" not in error.value


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
