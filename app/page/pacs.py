"""The page's PACS link: "Load from PACS" (QIDO-RS search, WADO-RS retrieve into memory) and "Send to PACS"
(the derived series stored back into the study with STOW-RS).

Credentials come from the page server's environment (``SPARSECT_DICOMWEB_USER`` and
``SPARSECT_DICOMWEB_PASSWORD``, or ``SPARSECT_DICOMWEB_TOKEN``), never from a widget. Pulled instances stay
in memory, like uploads. Failures are shown as one line (:class:`data.DicomWebError`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsect import data
from sparsect.app.page import keys

#: session-state keys of the PACS widgets (named in app/page/keys.py)
URL, RESULTS, SERIES, FILES = keys.PACS_URL, keys.PACS_STUDIES, keys.PACS_SERIES, keys.PACS_FILES


def study_label(study: dict[str, Any]) -> str:
    """One line per study for the picker: date, patient ID, accession, description, instance count."""
    date = str(study.get("date") or "")
    date = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date or "no date"
    return (f"{date} | {study.get('patient_id') or '?'} | acc. {study.get('accession') or '-'} | "
            f"{study.get('description') or 'no description'} ({study.get('instances') or '?'} images)")


def series_label(series: dict[str, Any]) -> str:
    return (f"#{series.get('number') or '?'} {series.get('description') or 'no description'} "
            f"({series.get('instances') or '?'} images)")


def send(url: str, reference: data.CTSlice, runs: Sequence[Any], views: int, labels: dict[str, str]) -> int:
    """Store one derived series per run (``run.method``, ``run.image_hu``) into the reference's study; returns
    the number of instances the server accepted. Not de-identified: the series joins the patient's study."""
    pacs = data.DicomWeb(url)
    stored = 0
    with tempfile.TemporaryDirectory(prefix="sparsect-pacs-") as tmp:
        for number, run in enumerate(runs):
            paths = data.write_series(Path(tmp) / run.method, run.image_hu, reference,
                                      f"{labels.get(run.method, run.method)} {views} views",
                                      series_number=1000 + number)
            stored += pacs.store(paths)
    return stored


def load_widget(sb: Any, state: Any) -> list[tuple[str, bytes]] | None:
    """Sidebar widgets of "Load from PACS"; the pulled (name, bytes) files once a series is loaded."""
    url = sb.text_input("DICOMweb URL", key=URL, placeholder="http://pacs:8042/dicom-web",
                        help="Credentials come from SPARSECT_DICOMWEB_USER/PASSWORD or SPARSECT_DICOMWEB_TOKEN "
                             "in the page server's environment.")
    cols = sb.columns(2)
    patient = cols[0].text_input("Patient ID", key="pacs_patient")
    accession = cols[1].text_input("Accession", key="pacs_accession")
    date = sb.text_input("Study date", key="pacs_date", placeholder="YYYYMMDD or YYYYMMDD-YYYYMMDD")
    if sb.button("Search", key="pacs_search", icon=":material/search:", disabled=not url):
        state.pop(FILES, None)
        try:
            state[RESULTS] = data.DicomWeb(url).search_studies(patient_id=patient.strip() or None,
                                                               accession=accession.strip() or None,
                                                               date=date.strip() or None)
        except data.DicomWebError as exc:
            state[RESULTS] = []
            sb.error(str(exc))
    studies = state.get(RESULTS) or []
    if not studies:
        if RESULTS in state:
            sb.caption("No study found.")
        return state.get(FILES)
    index = sb.selectbox("Study", range(len(studies)), key="pacs_study", format_func=lambda i: study_label(studies[i]))
    study = studies[index]["study_uid"]
    try:
        series = state.get(SERIES, {}).get(study)
        if series is None:
            series = data.DicomWeb(url).search_series(study)
            state.setdefault(SERIES, {})[study] = series
    except data.DicomWebError as exc:
        sb.error(str(exc))
        return None
    if not series:
        sb.caption("This study has no CT series.")
        return None
    choice = sb.selectbox("Series", range(len(series)), key="pacs_series_pick",
                          format_func=lambda i: series_label(series[i]))
    if sb.button("Load", key="pacs_load", icon=":material/download:"):
        try:
            state[FILES] = data.DicomWeb(url).retrieve_bytes(study, series[choice]["series_uid"])
        except data.DicomWebError as exc:
            sb.error(str(exc))
    return state.get(FILES)


def send_widget(container: Any, state: Any, reference: data.CTSlice, runs: Sequence[Any], views: int,
                labels: dict[str, str]) -> None:
    """The "Send to PACS" button (only for a slice loaded from the PACS)."""
    url = state.get(URL)
    if not url or not state.get(FILES):
        return
    if container.button("Send to PACS", key="pacs_send", icon=":material/upload:", width="stretch",
                        help="Store the derived series (not de-identified) into the study they came from."):
        try:
            stored = send(url, reference, runs, views, labels)
            container.success(f"Stored {stored} image(s) in {len(runs)} series.")
        except data.DicomWebError as exc:
            container.error(str(exc))


__all__ = ["load_widget", "send", "send_widget", "series_label", "study_label"]
