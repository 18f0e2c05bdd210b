"""``sparsect batch --dicomweb URL --study UID [--series UID] [--push]``: the PACS ends of a batch job.

Before the batch, the study (or one series of it) is pulled with WADO-RS into IN_DIR, one file per
instance (rerunning pulls the same files again, so the batch's restart logic still applies). After it,
``--push`` stores every derived series of that study found under OUT_DIR with STOW-RS. Credentials come
from the environment (:class:`data.Credentials`), never from options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from sparsect import data
from sparsect.app.batch.work import STATE_DIR


def pull(url: str, study: str, series: str | None, in_dir: Path, credentials: data.Credentials | None = None,
         log: Callable[..., Any] | None = None) -> int:
    """Pull ``study`` (or its ``series``) from the DICOMweb server at ``url`` into ``in_dir``; returns the
    number of instances. Raises :class:`data.DicomWebError`."""
    files = data.DicomWeb(url, credentials).pull(study, in_dir, series)
    if log:
        log("pacs.pull", url=url, study=study, series=series, instances=len(files))
    return len(files)


def derived_files(out_dir: Path, study: str) -> list[Path]:
    """The derived DICOM files under ``out_dir`` that belong to ``study`` (the batch's ``<method>_<views>v``
    series; its state folder and other studies' outputs are left out)."""
    found = []
    for path in sorted(out_dir.rglob("*.dcm")):
        if STATE_DIR in path.relative_to(out_dir).parts:
            continue
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        except (InvalidDicomError, OSError):
            continue
        if header.get("StudyInstanceUID") == study:
            found.append(path)
    return found


def push(url: str, study: str, out_dir: Path, credentials: data.Credentials | None = None,
         log: Callable[..., Any] | None = None) -> int:
    """Store the derived series of ``study`` under ``out_dir`` on the server; returns how many instances it
    accepted. Raises :class:`data.DicomWebError`."""
    files = derived_files(out_dir, study)
    stored = data.DicomWeb(url, credentials).store(files) if files else 0
    if log:
        log("pacs.push", url=url, study=study, instances=stored)
    return stored


__all__ = ["derived_files", "pull", "push"]
