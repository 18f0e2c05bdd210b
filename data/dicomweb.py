"""A PACS link over DICOMweb: QIDO-RS search, WADO-RS retrieve, STOW-RS store (through ``dicomweb-client``).

Credentials come only from the environment (or a prompt the caller supplies), never from arguments that
could land in shell history: ``SPARSECT_DICOMWEB_TOKEN`` (bearer) or ``SPARSECT_DICOMWEB_USER`` with
``SPARSECT_DICOMWEB_PASSWORD`` (basic). They are attached to the HTTP session only, so they appear in no
log line, message or output file. Every network failure or HTTP 4xx/5xx answer raises
:class:`DicomWebError` with a one-line message naming the operation and the server (no credentials, no
patient data).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pydicom
import requests
from pydicom.dataset import Dataset
from requests.auth import AuthBase, HTTPBasicAuth

from .atomic import atomic_write
from .errors import DicomWebError

TOKEN_VARIABLE = "SPARSECT_DICOMWEB_TOKEN"
USER_VARIABLE = "SPARSECT_DICOMWEB_USER"
PASSWORD_VARIABLE = "SPARSECT_DICOMWEB_PASSWORD"
_CREDENTIAL_HINT = f"check {USER_VARIABLE}/{PASSWORD_VARIABLE} or {TOKEN_VARIABLE}"
_DATE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
# Instances per STOW-RS request: keeps each request a few tens of MB for 512x512 slices.
_STORE_BATCH = 50


@dataclass(frozen=True)
class Credentials:
    """Basic (user, password) or bearer (token) credentials; ``repr`` never shows the secrets."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 prompt: Callable[[str], str] | None = None) -> Credentials:
        """Credentials from ``SPARSECT_DICOMWEB_*``; with a user but no password, ``prompt`` (e.g.
        ``getpass.getpass``) asks for it. No variables: anonymous access."""
        env = os.environ if environ is None else environ
        token, user, password = (env.get(name) or None for name in (TOKEN_VARIABLE, USER_VARIABLE, PASSWORD_VARIABLE))
        if token and (user or password):
            raise DicomWebError(f"set either {TOKEN_VARIABLE} or {USER_VARIABLE}/{PASSWORD_VARIABLE}, not both")
        if password and not user:
            raise DicomWebError(f"{PASSWORD_VARIABLE} is set but {USER_VARIABLE} is not")
        if user and not password:
            if prompt is None:
                raise DicomWebError(f"{USER_VARIABLE} is set but {PASSWORD_VARIABLE} is not")
            password = prompt(f"DICOMweb password for {user}: ")
        return cls(user=user, password=password, token=token)

    def apply(self, session: requests.Session, url: str | None = None) -> None:
        """Attach to ``session`` (as its auth handler, not as logged per-request headers); with ``url``, only
        requests to that URL's origin (scheme, host, port) carry them."""
        auth: AuthBase | None = None
        if self.token:
            auth = _Bearer(self.token)
        elif self.user:
            auth = HTTPBasicAuth(self.user, self.password or "")
        if auth is not None:
            session.auth = auth if url is None else _OriginAuth(auth, origin(url))


class _Bearer(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(<hidden>)"


def origin(url: str) -> tuple[str, str, int | None]:
    """The origin of ``url``: (scheme, host, port), the port defaulted from the scheme."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


class _OriginAuth(AuthBase):
    """Apply ``auth`` only to requests whose URL has the server's origin."""

    def __init__(self, auth: AuthBase, server: tuple[str, str, int | None]) -> None:
        self._auth, self._origin = auth, server

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return self._auth(request) if origin(request.url or "") == self._origin else request

    def __repr__(self) -> str:
        return "_OriginAuth(<hidden>)"


class CrossOriginRedirect(requests.exceptions.RequestException):
    """The server answered with a redirect to another origin, which is not followed."""


class _OriginSession(requests.Session):
    """A session that follows redirects only within the server's origin and never sends an ``Authorization``
    header (nor ``.netrc`` credentials) anywhere else."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.origin = origin(url)

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None and origin(urljoin(resp.url, target)) != self.origin:
            raise CrossOriginRedirect("redirect to another origin")
        return target

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        if origin(prepared_request.url or "") != self.origin:
            prepared_request.headers.pop("Authorization", None)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DicomWebError(f"the DICOMweb URL must be http(s)://host[:port]/path, got {url!r}")
    if parts.username or parts.password:
        raise DicomWebError(f"put credentials in {USER_VARIABLE}/{PASSWORD_VARIABLE} or {TOKEN_VARIABLE}, "
                            "not in the URL")
    if parts.query or parts.fragment:
        raise DicomWebError("the DICOMweb URL must not have a query or fragment")
    return url.rstrip("/")


def _check_date(date: str) -> str:
    if not _DATE.match(date) or date in ("", "-"):
        raise DicomWebError(f"study date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD, got {date!r}")
    return date


def _value(attributes: Mapping[str, Any], tag: str) -> Any:
    """First value of a DICOM JSON attribute (PN as its alphabetic form), or None."""
    values = attributes.get(tag, {}).get("Value") or [None]
    first = values[0]
    if isinstance(first, dict):
        return first.get("Alphabetic")
    return first if len(values) == 1 else list(values)


_STUDY_FIELDS = {"study_uid": "0020000D", "patient_id": "00100020", "patient_name": "00100010",
                 "accession": "00080050", "date": "00080020", "description": "00081030",
                 "modalities": "00080061", "instances": "00201208"}
_SERIES_FIELDS = {"series_uid": "0020000E", "modality": "00080060", "number": "00200011",
                  "description": "0008103E", "instances": "00201209"}


class DicomWeb:
    """One DICOMweb server (``url`` is its DICOMweb root, e.g. ``http://pacs:8042/dicom-web``).

    Parameters
    ----------
    url : the server's DICOMweb base URL, without credentials.
    credentials : default :meth:`Credentials.from_env` (no prompt). They are sent only to ``url``'s origin;
        a redirect to another origin is not followed (:class:`DicomWebError`).
    timeout : seconds to wait for the server to connect and to answer each request.
    label : how messages name the server (default its URL), e.g. an endpoint name on the page.
    hint : what a 401/403 message advises (default: check the ``SPARSECT_DICOMWEB_*`` variables).
    """

    def __init__(self, url: str, credentials: Credentials | None = None, timeout: float = 60.0,
                 label: str | None = None, hint: str | None = None) -> None:
        from dicomweb_client.api import DICOMwebClient  # 0.45 s to import (measured); only a PACS link needs it

        self.url = _check_url(url)
        self.label, self._hint = label or self.url, hint or _CREDENTIAL_HINT
        session = _OriginSession(self.url)
        (credentials if credentials is not None else Credentials.from_env()).apply(session, self.url)
        self._client = DICOMwebClient(self.url, session=session, timeout=timeout)
        # One attempt: a server that is down should fail in one clear line, not after minutes of retries.
        self._client.set_http_retry_params(retry=False)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        where = f"DICOMweb {operation} at {self.label}"
        try:
            yield
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "error"
            hint = f" ({self._hint})" if status in (401, 403) else ""
            raise DicomWebError(f"{where} failed: HTTP {status} {reason}{hint}") from None
        except CrossOriginRedirect:
            raise DicomWebError(f"{where} failed: the server redirected to another origin (not followed)") from None
        except requests.exceptions.Timeout:
            raise DicomWebError(f"{where} failed: the server did not answer in time") from None
        except requests.exceptions.SSLError:
            raise DicomWebError(f"{where} failed: TLS/SSL error (certificate or protocol)") from None
        except requests.exceptions.ConnectionError:
            raise DicomWebError(f"{where} failed: cannot connect (is the server up and the URL right?)") from None
        except requests.exceptions.RequestException as exc:
            raise DicomWebError(f"{where} failed: {type(exc).__name__}") from None
        except ValueError as exc:  # dicomweb-client: a response it cannot decode
            raise DicomWebError(f"{where} failed: unexpected response ({str(exc).splitlines()[0][:200]})") from None

    def search_studies(self, patient_id: str | None = None, accession: str | None = None, date: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
        """QIDO-RS study search by patient ID, accession number and/or study date (``YYYYMMDD`` or a range
        ``YYYYMMDD-YYYYMMDD``); at least one filter. Returns dicts with the keys study_uid, patient_id,
        patient_name, accession, date, description, modalities, instances."""
        filters = {key: value for key, value in (("PatientID", patient_id), ("AccessionNumber", accession),
                                                 ("StudyDate", _check_date(date) if date else None)) if value}
        if not filters:
            raise DicomWebError("search by at least one of patient ID, accession number or study date")
        with self._errors("study search (QIDO-RS)"):
            found = self._client.search_for_studies(search_filters=filters, limit=int(limit),
                                                    fields=["StudyDescription", "ModalitiesInStudy",
                                                            "NumberOfStudyRelatedInstances"])
        return [{key: _value(item, tag) for key, tag in _STUDY_FIELDS.items()} for item in found]

    def search_series(self, study_uid: str, modality: str | None = "CT") -> list[dict[str, Any]]:
        """QIDO-RS series of a study (default only CT): dicts with series_uid, modality, number,
        description, instances."""
        filters = {"Modality": modality} if modality else None
        with self._errors(f"series search (QIDO-RS) of study {study_uid}"):
            found = self._client.search_for_series(study_instance_uid=study_uid, search_filters=filters,
                                                   fields=["NumberOfSeriesRelatedInstances", "SeriesDescription"])
        return [{key: _value(item, tag) for key, tag in _SERIES_FIELDS.items()} for item in found]

    def retrieve(self, study_uid: str, series_uid: str | None = None) -> list[Dataset]:
        """WADO-RS retrieve of a study, or of one of its series: the instances as pydicom datasets."""
        what = f"series {series_uid}" if series_uid else f"study {study_uid}"
        with self._errors(f"retrieve (WADO-RS) of {what}"):
            if series_uid:
                return list(self._client.retrieve_series(study_uid, series_uid))
            return list(self._client.retrieve_study(study_uid))

    def retrieve_bytes(self, study_uid: str, series_uid: str | None = None) -> list[tuple[str, bytes]]:
        """:meth:`retrieve` as ``(name, DICOM file bytes)`` pairs, for :func:`data.load_bytes` (in memory)."""
        return [(f"{ds.SOPInstanceUID}.dcm", _encode(ds)) for ds in self.retrieve(study_uid, series_uid)]

    def pull(self, study_uid: str, out_dir: str | os.PathLike, series_uid: str | None = None) -> list[Path]:
        """Retrieve and write each instance to ``out_dir/<SOPInstanceUID>.dcm`` (:func:`data.atomic.atomic_write`:
        temporary file + rename, so a failed pull leaves no partial file, and the mode follows the umask;
        pulling again overwrites with the same content)."""
        datasets = self.retrieve(study_uid, series_uid)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for ds in datasets:
            uid = str(ds.SOPInstanceUID)
            if not re.fullmatch(r"[0-9.]+", uid):
                raise DicomWebError(f"the server sent an instance with an invalid SOPInstanceUID {uid[:64]!r}")
            paths.append(atomic_write(out / f"{uid}.dcm", _encode(ds)))
        return paths

    def store(self, instances: Iterable[Dataset | str | os.PathLike]) -> int:
        """STOW-RS store of datasets or DICOM files; returns how many the server accepted. Raises
        :class:`DicomWebError` if it refused any."""
        datasets = [item if isinstance(item, Dataset) else pydicom.dcmread(item) for item in instances]
        stored = 0
        for start in range(0, len(datasets), _STORE_BATCH):
            batch = datasets[start:start + _STORE_BATCH]
            with self._errors(f"store (STOW-RS) of {len(datasets)} instances"):
                response = self._client.store_instances(batch)
            failed = list(getattr(response, "FailedSOPSequence", []))
            if failed:
                reason = getattr(failed[0], "FailureReason", "?")
                raise DicomWebError(f"DICOMweb store (STOW-RS) at {self.label}: the server refused {len(failed)} of "
                                    f"{len(batch)} instances (first failure reason {reason})")
            stored += len(getattr(response, "ReferencedSOPSequence", [])) or len(batch)
        return stored


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


__all__ = ["PASSWORD_VARIABLE", "TOKEN_VARIABLE", "USER_VARIABLE", "Credentials", "DicomWeb", "origin"]
