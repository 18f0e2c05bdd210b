"""Clinical display windows (:data:`WINDOWS`) and their HU intervals (:func:`window_bounds`); no torch, so
the command line's help lists them without loading it."""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Clinical display windows as (center, width) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "full": (1023.5, 4095.0),  # [-1024, 3071]
}

DEFAULT_WINDOW: tuple[float, float] = (-1024.0, 3071.0)

WindowLike = str | Sequence[float]


def window_bounds(window: WindowLike = DEFAULT_WINDOW) -> tuple[float, float]:
    """HU interval ``(low, high)`` of a window.

    Parameters
    ----------
    window : a name in :data:`WINDOWS` (stored as (center, width)) or an explicit ``(low, high)`` pair.

    Returns
    -------
    (low, high) in HU with low < high.
    """
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; expected one of {sorted(WINDOWS)} or (low, high)")
        center, width = WINDOWS[window]
        low, high = center - width / 2.0, center + width / 2.0
    else:
        values = tuple(float(v) for v in window)
        if len(values) != 2:
            raise ValueError(f"window must be a name or a (low, high) pair in HU, got {window!r}")
        low, high = values
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"window needs finite low < high, got ({low}, {high})")
    return low, high


__all__ = ["DEFAULT_WINDOW", "WINDOWS", "WindowLike", "window_bounds"]
