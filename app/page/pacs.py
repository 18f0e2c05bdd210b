"""The page's PACS link: "Load from PACS" (QIDO-RS search, WADO-RS retrieve into memory) and "Send to PACS"
(the derived series stored back into the study with STOW-RS).

Visitors pick one of the operator's endpoints by name (:mod:`sparsect.app.pacs_endpoints`); no URL or
credential ever comes from a widget, and credentials go only to the endpoint's own origin. "Send to PACS"
is offered only for an endpoint whose ``allow_send`` is on. Every search, retrieve and send is recorded in the
audit log (:mod:`sparsect.app.audit`: user, action, endpoint, study UID; no patient data). Pulled instances
stay in memory, like uploads. Failures are shown as one line (:class:`data.DicomWebError`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from sparsect import data
from sparsect.app import access, audit, pacs_endpoints
from sparsect.app.page import keys

#: session-state keys of the PACS widgets (named in app/page/keys.py), and the endpoint the files came from
RESULTS, SERIES, FILES = keys.PACS_STUDIES, keys.PACS_SERIES, keys.PACS_FILES
ENDPOINT, SOURCE_ENDPOINT = "pacs_endpoint", "pacs_files_endpoint"


def available() -> bool:
    """Whether the operator configured at least one PACS (a broken configuration counts as none)."""
    try:
        return bool(pacs_endpoints.configured())
    except pacs_endpoints.ConfigError:
        return False


def study_label(study: dict[str, Any]) -> str:
    """One line per study for the picker: date, patient ID, accession, description, instance count."""
    date = str(study.get("date") or "")
    date = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date or "no date"
    return (f"{date} | {study.get('patient_id') or '?'} | acc. {study.get('accession') or '-'} | "
            f"{study.get('description') or 'no description'} ({study.get('instances') or '?'} images)")


def series_label(series: dict[str, Any]) -> str:
    return (f"#{series.get('number') or '?'} {series.get('description') or 'no description'} "
            f"({series.get('instances') or '?'} images)")


def send(endpoint: pacs_endpoints.Endpoint, reference: data.CTSlice, runs: Sequence[Any], views: int,
         labels: dict[str, str]) -> int:
    """Store one derived series per run (``run.method``, ``run.image_hu``) on ``endpoint``, marked as research
    reconstructions, in a research study of the same patient (in the reference's own study only where the operator
    set ``same_study`` for the endpoint); returns the number of instances the server accepted. Not de-identified.
    Raises :class:`data.DicomWebError` (also when the endpoint does not allow sending)."""
    if not endpoint.allow_send:
        raise data.DicomWebError(f"sending to {endpoint.name!r} is not enabled by the page's operator")
    pacs = endpoint.client()
    stored = 0
    with tempfile.TemporaryDirectory(prefix="sparsect-pacs-") as tmp:
        for number, run in enumerate(runs):
            paths = data.write_series(Path(tmp) / run.method, run.image_hu, reference,
                                      data.dicom_write.Provenance(labels.get(run.method, run.method), views),
                                      series_number=1000 + number, same_study=endpoint.same_study)
            stored += pacs.store(paths)
    return stored


def _search(sb: Any, state: Any, endpoint: pacs_endpoints.Endpoint, filters: dict[str, str | None]) -> None:
    state.pop(FILES, None)
    ok = True
    try:
        state[RESULTS] = endpoint.client().search_studies(**filters)
    except data.DicomWebError as exc:
        state[RESULTS], ok = [], False
        sb.error(str(exc))
    audit.record("pacs.search", access.current_user(st), endpoint=endpoint.name,
                 by=",".join(k for k, v in filters.items() if v) or None, studies=len(state[RESULTS]), ok=ok)


def _series_of(sb: Any, state: Any, endpoint: pacs_endpoints.Endpoint, study: str) -> list[dict[str, Any]] | None:
    cache = state.setdefault(SERIES, {})
    if (endpoint.name, study) not in cache:
        try:
            cache[(endpoint.name, study)] = endpoint.client().search_series(study)
        except data.DicomWebError as exc:
            sb.error(str(exc))
            return None
    return cache[(endpoint.name, study)]


def _pick_endpoint(sb: Any) -> pacs_endpoints.Endpoint | None:
    try:
        endpoints = {e.name: e for e in pacs_endpoints.configured()}
    except pacs_endpoints.ConfigError as exc:
        sb.error(str(exc))
        return None
    if not endpoints:
        sb.info("No PACS is configured for this page.")
        return None
    name = sb.selectbox("PACS", list(endpoints), key=ENDPOINT, help="The PACS this page's operator set up.")
    return endpoints[name]


def load_widget(sb: Any, state: Any) -> list[tuple[str, bytes]] | None:
    """Sidebar widgets of "Load from PACS"; the pulled (name, bytes) files once a series is loaded."""
    endpoint = _pick_endpoint(sb)
    if endpoint is None:
        return None
    if state.get(SOURCE_ENDPOINT) not in (None, endpoint.name):  # another endpoint picked: forget the last one's
        for key in (RESULTS, FILES, SOURCE_ENDPOINT):
            state.pop(key, None)
    cols = sb.columns(2)
    patient = cols[0].text_input("Patient ID", key="pacs_patient")
    accession = cols[1].text_input("Accession", key="pacs_accession")
    date = sb.text_input("Study date", key="pacs_date", placeholder="YYYYMMDD or YYYYMMDD-YYYYMMDD")
    if sb.button("Search", key="pacs_search", icon=":material/search:"):
        state[SOURCE_ENDPOINT] = endpoint.name
        _search(sb, state, endpoint, {"patient_id": patient.strip() or None, "accession": accession.strip() or None,
                                      "date": date.strip() or None})
    studies = state.get(RESULTS) or []
    if not studies:
        if RESULTS in state:
            sb.caption("No study found.")
        return state.get(FILES)
    index = sb.selectbox("Study", range(len(studies)), key="pacs_study", format_func=lambda i: study_label(studies[i]))
    study = studies[index]["study_uid"]
    series = _series_of(sb, state, endpoint, study)
    if not series:
        if series is not None:
            sb.caption("This study has no CT series.")
        return None
    choice = sb.selectbox("Series", range(len(series)), key="pacs_series_pick",
                          format_func=lambda i: series_label(series[i]))
    if sb.button("Load", key="pacs_load", icon=":material/download:"):
        loaded: list[tuple[str, bytes]] = []
        try:
            loaded = state[FILES] = endpoint.client().retrieve_bytes(study, series[choice]["series_uid"])
            state[SOURCE_ENDPOINT] = endpoint.name
        except data.DicomWebError as exc:
            sb.error(str(exc))
        audit.record("pacs.retrieve", access.current_user(st), endpoint=endpoint.name, study=study,
                     series=series[choice]["series_uid"], instances=len(loaded), ok=bool(loaded))
    return state.get(FILES)


def send_widget(container: Any, state: Any, reference: data.CTSlice, runs: Sequence[Any], views: int,
                labels: dict[str, str]) -> None:
    """The "Send to PACS" button: only for a slice loaded from an endpoint whose operator allows sending."""
    if not state.get(FILES):
        return
    try:
        endpoint = pacs_endpoints.by_name(state.get(SOURCE_ENDPOINT))
    except pacs_endpoints.ConfigError:
        return
    if endpoint is None or not endpoint.allow_send:
        return
    if container.button("Send to PACS", key="pacs_send", icon=":material/upload:", width="stretch",
                        help=f"Store the derived series (not de-identified, marked as research reconstructions) "
                             f"on {endpoint.name}, "
                             + ("into the study they came from." if endpoint.same_study else
                                "in a research study of the same patient.")):
        stored = 0
        try:
            stored = send(endpoint, reference, runs, views, labels)
            container.success(f"Stored {stored} image(s) in {len(runs)} series.")
        except data.DicomWebError as exc:
            container.error(str(exc))
        study = getattr(getattr(reference, "dataset", None), "StudyInstanceUID", None)
        audit.record("pacs.send", access.current_user(st), endpoint=endpoint.name, study=study,
                     series=len(runs), instances=stored, ok=bool(stored))


__all__ = ["available", "load_widget", "send", "send_widget", "series_label", "study_label"]
