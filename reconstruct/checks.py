"""Argument checks shared by the reconstruction functions and :func:`sparsect.reconstruct.run`."""

from __future__ import annotations

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
