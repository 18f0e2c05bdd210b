"""The JSON geometry file of a measured scan.

It fills what the scan file lacks; every key is optional, unknown keys are errors (a typo would
otherwise be ignored silently)::

    {"beam": "fan",                    # "parallel" or "fan" (flat detector)
     "detector_pixel_mm": 0.2,         # detector bin width at the detector
     "center_offset": 0.0,             # bins from the detector's middle to the projected rotation axis
     "angles_deg": [0, 0.5, ...],      # or "angles_rad"; only when the file has no angles
     "source_distance_mm": 410.66,     # fan beam: source to rotation centre
     "detector_distance_mm": 143.08}   # fan beam: rotation centre to detector

Values are checked here (types, finite, positive); consistency with the sinogram is checked by
:class:`data.MeasuredScan`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScanError, ScanNotFoundError

BEAMS = ("parallel", "fan")
_NUMBERS = ("detector_pixel_mm", "center_offset", "source_distance_mm", "detector_distance_mm")
_POSITIVE = ("detector_pixel_mm", "source_distance_mm", "detector_distance_mm")
KEYS = ("beam", *_NUMBERS, "angles_deg", "angles_rad")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ScanError(f"geometry {key} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ScanError(f"geometry {key} must be finite, got {value!r}")
    if key in _POSITIVE and value <= 0:
        raise ScanError(f"geometry {key} must be a positive distance in mm, got {value!r}")
    return value


def _angles(key: str, value: Any) -> np.ndarray:
    try:
        angles = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ScanError(f"geometry {key} must be a list of numbers") from None
    if angles.ndim != 1 or angles.size == 0:
        raise ScanError(f"geometry {key} must be a non-empty list of numbers, got shape {angles.shape}")
    if not np.isfinite(angles).all():
        raise ScanError(f"geometry {key} contains NaN or infinite values")
    return np.radians(angles) if key == "angles_deg" else angles


def parse_geometry(values: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical fields from a geometry mapping: beam, the numbers of :data:`KEYS` and ``angles`` (radians)."""
    if not isinstance(values, Mapping):
        raise ScanError(f"the geometry must be a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ScanError(f"unknown geometry key {', '.join(map(repr, unknown))}; known keys: {', '.join(KEYS)}")
    if "angles_deg" in values and "angles_rad" in values:
        raise ScanError("give the angles once: angles_deg or angles_rad, not both")
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key == "beam":
            if value not in BEAMS:
                raise ScanError(f"geometry beam must be 'parallel' or 'fan', got {value!r}")
            fields[key] = value
        elif key in _NUMBERS:
            fields[key] = _number(key, value)
        else:
            fields["angles"] = _angles(key, value)
    return fields


def read_geometry(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Parse a JSON geometry file (or an already parsed mapping) with :func:`parse_geometry`."""
    if isinstance(source, Mapping):
        return parse_geometry(source)
    path = Path(source)
    if not path.is_file():
        raise ScanNotFoundError(f"no such geometry file: {str(path)!r}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScanError(f"{path.name} is not a JSON geometry file: {exc}") from None
    return parse_geometry(values)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-9))


def merge_geometry(found: Mapping[str, Any], given: Mapping[str, Any], given_name: str) -> dict[str, Any]:
    """``found`` (from the scan file) completed by ``given`` (the geometry file); a key in both must agree."""
    merged = dict(found)
    for key, value in given.items():
        if key in merged and not _same(merged[key], value):
            shown = "the angles" if key == "angles" else f"{key} ({merged[key]!r} vs {value!r})"
            raise ScanError(f"{given_name} contradicts the scan file on {shown}: remove it from one of them")
        merged[key] = value
    return merged


__all__ = ["BEAMS", "KEYS", "merge_geometry", "parse_geometry", "read_geometry"]
