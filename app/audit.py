"""The audit log of PACS access and sign-in on the page: one ``event=... key=value`` line per action on the
logger ``sparsect.audit`` (the style of the batch jobs' log, :class:`sparsect.app.batch.command.Log`).

A line names the time, the signed-in user, the action (``pacs.search``, ``pacs.retrieve``, ``pacs.send``,
``signin.ok``, ``signin.failed``, ``signout``), the PACS endpoint by its configured name and the study UID.
It never holds patient names or IDs, accession numbers, search terms, passwords or tokens: a search is
recorded by which fields were searched (``by=patient_id,date``) and how many studies were found.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any

LOGGER_NAME = "sparsect.audit"
logger = logging.getLogger(LOGGER_NAME)


def _value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' ="\n\t')) else text


def _ensure_handler() -> None:
    """Write to the server's stderr when nothing else handles the logger (Streamlit configures only its own)."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def record(action: str, user: str | None, level: int = logging.INFO, **fields: Any) -> str:
    """Log one audit line and return it.

    Parameters
    ----------
    action : str
        The event, e.g. ``pacs.search``.
    user : str or None
        The signed-in user (``None``: no sign-in configured, logged as ``-``).
    level : int
        The logging level (``logging.WARNING`` for a failed sign-in).
    **fields
        Further ``key=value`` fields (endpoint, study, instances...); ``None`` values are left out. Callers
        pass no patient data.

    Returns
    -------
    str
        The line as logged.
    """
    _ensure_handler()
    ts = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [f"ts={ts}", f"level={logging.getLevelName(level).lower()}", f"event={action}",
             f"user={_value(user or '-')}"]
    parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    line = " ".join(parts)
    logger.log(level, line)
    return line


__all__ = ["LOGGER_NAME", "logger", "record"]
