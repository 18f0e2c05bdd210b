"""Every ``st.session_state`` key the page keeps itself (widget keys stay next to their widgets), with
their start values. Tests read some of them (results, reader_csv, reader_seed, job), so they are stable."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from sparsect.app.page.run_cache import LRU

RESULTS = "results"  # run key -> run.Outcome of this session
SIMULATIONS = "sims"  # (input key, scan settings) -> scans.Scan, a few kept
UPLOADS = "uploads"  # upload digest -> uploads.UploadSummary, a few kept
JOB = "job"  # jobs.Job of the latest simulated run
VIEWS = "views"  # the views slider, also set by the preset buttons
SIZE_CHOSEN = "size_chosen"  # whether the visitor picked the working size (until then it follows the estimate)
READER_SEED = "reader_seed"  # seed of the blinded labels
READER_REVEALED = "reader_revealed"  # whether the reader study is unblinded
READER_CSV = "reader_csv"  # the ratings CSV last offered for download
MEASURED_SCANS = "measured_scans"  # upload digest -> data.MeasuredScan, a few kept
MEASURED_JOB = "measured_job"  # (settings key, jobs.Job) of the latest measured-scan run
MEASURED_RESULTS = "measured_results"  # (settings key, reference, outcomes) of the last finished measured run
PACS_STUDIES, PACS_SERIES, PACS_FILES = "pacs_studies", "pacs_series", "pacs_files"


def new_reader_seed() -> int:
    """A fresh seed for the reader study's labels (six digits, shown as the study number)."""
    return int(time.time_ns() % 1_000_000)


def init_state(state: MutableMapping[str, Any]) -> None:
    """Set the start value of every key a session does not have yet."""
    state.setdefault(RESULTS, {})
    state.setdefault(SIMULATIONS, LRU(4))
    state.setdefault(UPLOADS, LRU(2))
    state.setdefault(MEASURED_SCANS, LRU(2))
    state.setdefault(READER_SEED, new_reader_seed())
    state.setdefault(READER_REVEALED, False)
    state.setdefault(VIEWS, 60)


__all__ = ["JOB", "MEASURED_JOB", "MEASURED_RESULTS", "MEASURED_SCANS", "PACS_FILES", "PACS_SERIES", "PACS_STUDIES",
           "READER_CSV", "READER_REVEALED", "READER_SEED", "RESULTS", "SIMULATIONS", "SIZE_CHOSEN", "UPLOADS", "VIEWS",
           "init_state", "new_reader_seed"]
