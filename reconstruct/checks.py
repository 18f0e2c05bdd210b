"""Argument checks shared by the reconstruction functions and :func:`sparsect.reconstruct.run`."""

from __future__ import annotations

from dataclasses import fields
from numbers import Real


def check_iterations(iterations: Real) -> int:
    """``iterations`` as an int; ``ValueError`` unless it is a whole number >= 1 (booleans rejected)."""
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations must be a whole number >= 1, got {iterations!r}")
    return int(iterations)


def check_photons(photons: float | None) -> None:
    """``ValueError`` unless the photon count is > 0 (None: unknown, ``math.inf``: noise-free; NaN rejected)."""
    if photons is not None and not photons > 0:
        raise ValueError(f"photons must be > 0 (math.inf for noise-free data) or None, got {photons!r}")


def check_config_fields(config: object) -> None:
    """``ValueError`` unless every int field of dataclass ``config`` is a whole number >= 1 and every float
    field a finite number > 0 and every bool field a bool (booleans rejected where a number is due); the
    models' configs call it."""
    for field in fields(config):
        value = getattr(config, field.name)
        if field.type in ("int", int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(config).__name__}.{field.name} must be a whole number >= 1, got {value!r}")
        elif field.type in ("bool", bool):
            if not isinstance(value, bool):
                raise ValueError(f"{type(config).__name__}.{field.name} must be true or false, got {value!r}")
        elif field.type in ("float", float):
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < float("inf"):
                raise ValueError(f"{type(config).__name__}.{field.name} must be a finite number > 0, got {value!r}")
