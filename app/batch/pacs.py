"""``sparsect batch --dicomweb URL --study UID [--series UID] [--push]``: the PACS ends of a batch job.

Before the batch, the study (or one series of it) is pulled with WADO-RS into IN_DIR, one file per
instance (rerunning pulls the same files again, so the batch's restart logic still applies). After it,
``--push`` stores every derived series of that study found under OUT_DIR with STOW-RS. Credentials come
from the environment (:class:`data.Credentials`), never from options.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from sparsect import data
from sparsect.app.batch.store import STATE_DIR
from sparsect.app.settings import InputError


@dataclass(frozen=True)
class Link:
    """The PACS options of one batch run: server, study, optional series, whether to push the results."""

    url: str
    study: str
    series: str | None
    push: bool
    credentials: data.Credentials

    @classmethod
    def from_options(cls, url: str | None, study: str | None, series: str | None, push: bool,
                     anonymize: bool) -> Link | None:
        """None without ``--dicomweb``; raises :class:`InputError` / :class:`data.DicomWebError` for options
        that do not go together or credentials that are incomplete (the password is asked for on a terminal)."""
        if url is None:
            if study or series or push:
                raise InputError("--study, --series and --push need --dicomweb URL")
            return None
        if not study:
            raise InputError("--dicomweb needs --study UID (the study to pull)")
        if push and anonymize:
            raise InputError("--push stores the derived series back into the study, so it cannot be combined with "
                             "--anonymize")
        prompt = getpass.getpass if sys.stdin is not None and sys.stdin.isatty() else None
        credentials = data.Credentials.from_env(prompt=prompt)
        data.DicomWeb(url, credentials)  # checks the URL before anything runs
        return cls(url, study, series, push, credentials)

    def pull(self, in_dir: Path, log: Callable[..., Any] | None = None) -> int:
        """:func:`pull` of this link's study or series into ``in_dir``."""
        return pull(self.url, self.study, self.series, in_dir, self.credentials, log)

    def store(self, out_dir: Path, log: Callable[..., Any] | None = None) -> int:
        """:func:`push` of this study's derived series under ``out_dir``."""
        return push(self.url, self.study, out_dir, self.credentials, log)


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


__all__ = ["Link", "derived_files", "pull", "push"]
