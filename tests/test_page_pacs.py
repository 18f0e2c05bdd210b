"""The page's "Load from PACS" and "Send to PACS" against a real Orthanc (fixture in conftest.py)."""

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
