"""The DICOMweb link against a real Orthanc (fixture ``orthanc`` in conftest.py): upload a CT series, find it,
pull it, reconstruct, push the derived series and check it in Orthanc; credential handling and failures."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pydicom
import pytest
import requests

from sparsect import data, reconstruct


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _orthanc_get(orthanc, path: str, **kwargs):
    response = requests.get(f"{orthanc.url}{path}", auth=(orthanc.user, orthanc.password), timeout=60, **kwargs)
    response.raise_for_status()
    return response.json()


def _orthanc_series(orthanc, series_uid: str) -> dict:
    """Orthanc's own REST API (not DICOMweb): the series and its instances' tags."""
    found = requests.post(f"{orthanc.url}/tools/lookup", data=series_uid, auth=(orthanc.user, orthanc.password),
                          timeout=60).json()
    assert len(found) == 1 and found[0]["Type"] == "Series", found
    series = _orthanc_get(orthanc, f"/series/{found[0]['ID']}")
    series["tags"] = [_orthanc_get(orthanc, f"/instances/{i}/simplified-tags") for i in series["Instances"]]
    return series


def test_upload_search_pull_reconstruct_push(orthanc, make_ct_series, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(data.dicomweb.USER_VARIABLE, orthanc.user)
    monkeypatch.setenv(data.dicomweb.PASSWORD_VARIABLE, orthanc.password)
    caplog.set_level(logging.DEBUG)
    source = make_ct_series(3)
    study_uid, series_uid = source[0].StudyInstanceUID, source[0].SeriesInstanceUID
    pacs = data.DicomWeb(orthanc.dicomweb + "/")
    assert pacs.store(source) == 3

    studies = pacs.search_studies(patient_id=source[0].PatientID)
    assert [s["study_uid"] for s in studies] == [study_uid]
    assert studies[0]["accession"] == "ACC-4711" and studies[0]["instances"] == 3
    assert study_uid in [s["study_uid"] for s in pacs.search_studies(accession="ACC-4711")]
    assert study_uid in [s["study_uid"] for s in pacs.search_studies(date="20240101-20240131")]
    assert study_uid not in [s["study_uid"] for s in pacs.search_studies(date="20230101-20231231")]
    series = pacs.search_series(study_uid)
    assert [(s["series_uid"], s["modality"], s["instances"]) for s in series] == [(series_uid, "CT", 3)]

    paths = pacs.pull(study_uid, tmp_path / "in", series_uid)
    assert sorted(p.name for p in paths) == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in source)
    assert not list((tmp_path / "in").glob(".*.part"))
    ct = data.load(tmp_path / "in")
    np.testing.assert_array_equal(ct.hu, np.stack([_hu(ds) for ds in source]).astype(np.float32))
    in_memory = data.load_bytes(pacs.retrieve_bytes(study_uid, series_uid))
    np.testing.assert_array_equal(in_memory.hu, ct.hu)

    images = []
    for index in range(len(ct)):
        simulation = data.simulate(ct.slice(index), 60)
        images.append(reconstruct.fbp(simulation.sinogram, simulation.geometry,
                                      pixel_size_mm=float(ct.spacing[1])).image_hu)
    written = data.write_series(tmp_path / "out", np.stack(images), ct, "FBP 60 views", same_study=True)
    assert pacs.store(written) == 3

    derived = [s for s in pacs.search_series(study_uid) if s["series_uid"] != series_uid]
    assert len(derived) == 1 and derived[0]["instances"] == 3
    stored = _orthanc_series(orthanc, derived[0]["series_uid"])
    assert len(stored["Instances"]) == 3
    sources = {ds.SOPInstanceUID for ds in source}
    referenced = {tags["SourceImageSequence"][0]["ReferencedSOPInstanceUID"] for tags in stored["tags"]}
    assert referenced == sources
    assert all(tags["StudyInstanceUID"] == study_uid and tags["ImageType"].startswith("DERIVED")
               for tags in stored["tags"])
    basic = base64.b64encode(f"{orthanc.user}:{orthanc.password}".encode()).decode()
    assert orthanc.password not in caplog.text and basic not in caplog.text


def test_wrong_password_is_one_clear_line(orthanc, make_ct_series):
    pacs = data.DicomWeb(orthanc.dicomweb, data.Credentials(orthanc.user, "not-the-password"))
    with pytest.raises(data.DicomWebError, match=r"study search \(QIDO-RS\) at .* failed: HTTP 401 Unauthorized "
                                                 r"\(check SPARSECT_DICOMWEB_USER") as error:
        pacs.search_studies(patient_id="PATIENT-42")
    message = str(error.value)
    assert "\n" not in message and "not-the-password" not in message and "PATIENT-42" not in message
    with pytest.raises(data.DicomWebError, match="HTTP 401"):
        pacs.store(make_ct_series(1))


@contextmanager
def _refusing_url() -> Iterator[str]:
    """A URL on 127.0.0.1 whose port is bound but not listening, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}/dicom-web"


def test_server_down_is_one_clear_line():
    with _refusing_url() as url:
        pacs = data.DicomWeb(url, data.Credentials("someone", "hunter2"), timeout=30)
        with pytest.raises(data.DicomWebError, match="cannot connect") as error:
            pacs.retrieve("1.2.3")
    assert "hunter2" not in str(error.value) and "\n" not in str(error.value)


def test_credentials_from_the_environment_only():
    env = {"SPARSECT_DICOMWEB_USER": "ana", "SPARSECT_DICOMWEB_PASSWORD": "pw1"}
    credentials = data.Credentials.from_env(env)
    assert (credentials.user, credentials.password, credentials.token) == ("ana", "pw1", None)
    assert "pw1" not in repr(credentials)
    token = data.Credentials.from_env({"SPARSECT_DICOMWEB_TOKEN": "tok"})
    session = requests.Session()
    token.apply(session)
    prepared = session.prepare_request(requests.Request("GET", "http://127.0.0.1/x"))
    assert prepared.headers["Authorization"] == "Bearer tok" and "tok" not in repr(token)
    asked = []
    prompted = data.Credentials.from_env({"SPARSECT_DICOMWEB_USER": "ana"}, prompt=lambda text: asked.append(text)
                                         or "typed")
    assert prompted.password == "typed" and asked == ["DICOMweb password for ana: "]
    with pytest.raises(data.DicomWebError, match="PASSWORD is not"):
        data.Credentials.from_env({"SPARSECT_DICOMWEB_USER": "ana"})
    with pytest.raises(data.DicomWebError, match="not both"):
        data.Credentials.from_env({**env, "SPARSECT_DICOMWEB_TOKEN": "tok"})
    assert data.Credentials.from_env({}) == data.Credentials()
    with pytest.raises(data.DicomWebError, match="not in the URL"):
        data.DicomWeb("http://ana:pw1@127.0.0.1:8042/dicom-web", data.Credentials())
    with pytest.raises(data.DicomWebError, match="must be http"):
        data.DicomWeb("ftp://127.0.0.1/dicom-web", data.Credentials())
    with pytest.raises(data.DicomWebError, match="study date must be"):
        data.DicomWeb("http://127.0.0.1:1/dicom-web", data.Credentials()).search_studies(date="2024-01-02")


def test_credentials_never_follow_a_redirect_to_another_origin():
    """The configured server redirects to another origin (a recording server on another port): the redirect is
    not followed, so the other server sees no request and no credentials."""
    from http_recorder import recorder

    with recorder() as elsewhere, recorder(redirect=None) as endpoint:
        endpoint.redirect = elsewhere.url
        pacs = data.DicomWeb(f"{endpoint.url}/dicom-web", data.Credentials("ana", "hunter2"), timeout=30)
        with pytest.raises(data.DicomWebError, match="redirected to another origin") as error:
            pacs.search_studies(patient_id="P-1")
        assert "hunter2" not in str(error.value) and "P-1" not in str(error.value)
        assert endpoint.authorized() and not elsewhere.requests
        token = data.DicomWeb(f"{endpoint.url}/dicom-web", data.Credentials(token="tok-1"), timeout=30)
        with pytest.raises(data.DicomWebError, match="another origin"):
            token.retrieve("1.2.3")
        assert not elsewhere.requests


def test_same_origin_redirect_keeps_credentials_and_other_hosts_get_none():
    from http_recorder import recorder

    with recorder() as endpoint:
        endpoint.redirect = f"{endpoint.url}/moved"  # the same origin: followed, with the credentials
        pacs = data.DicomWeb(f"{endpoint.url}/dicom-web", data.Credentials("ana", "hunter2"), timeout=30)
        assert pacs.search_studies(patient_id="P-1") == []
        assert [path.split("?")[0] for _, path, _ in endpoint.requests] == ["/dicom-web/studies",
                                                                            "/moved/dicom-web/studies"]
        assert len(endpoint.authorized()) == 2
    session = data.dicomweb._OriginSession("http://127.0.0.1:8042/dicom-web")
    data.Credentials("ana", "hunter2").apply(session, "http://127.0.0.1:8042/dicom-web")
    other = session.prepare_request(requests.Request("GET", "http://127.0.0.1:8043/dicom-web/studies"))
    same = session.prepare_request(requests.Request("GET", "http://127.0.0.1:8042/dicom-web/studies"))
    upgraded = session.prepare_request(requests.Request("GET", "https://127.0.0.1:8042/dicom-web/studies"))
    assert "Authorization" in same.headers
    assert "Authorization" not in other.headers and "Authorization" not in upgraded.headers
