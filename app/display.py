"""The display window a slice's pictures are drawn in: chosen from the data unless the user names one.

A radiologist reads a head in the brain window and a body in the soft-tissue one; the full CT range (-1024 to
3071 HU) flattens both to grey. :func:`choose_window` takes the DICOM's own window (WindowCenter/WindowWidth) when
it has one, else the body part (BodyPartExamined: a head gets the brain window), else the soft-tissue window.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparsect import data
from sparsect.app.settings import InputError, did_you_mean
from sparsect.reconstruct import windows

#: ``--window``'s value that chooses from the data.
AUTO = "auto"
#: BodyPartExamined words that mean a head.
HEAD_PARTS = ("HEAD", "BRAIN", "SKULL")


@dataclass(frozen=True)
class Window:
    """A display window: ``label`` as records and pictures name it ("brain", "dicom 40/100") and its
    ``bounds``, (low, high) HU."""

    label: str
    bounds: tuple[float, float]

    @property
    def caption(self) -> str:
        """E.g. "brain window 0 to 80 HU"."""
        low, high = self.bounds
        return f"{self.label} window {low:g} to {high:g} HU"


def named(name: str) -> Window:
    """The window called ``name`` (:data:`sparsect.reconstruct.windows.WINDOWS`)."""
    return Window(name, windows.window_bounds(name))


def check_window(name: str, option: str = "--window", auto: bool = True) -> str:
    """``name`` if it is a window of :data:`sparsect.reconstruct.windows.WINDOWS` (or :data:`AUTO`, where ``auto``
    is allowed); else :class:`InputError` naming the choices."""
    choices = [AUTO, *windows.WINDOWS] if auto else list(windows.WINDOWS)
    if name in choices:
        return name
    raise InputError(f"unknown {option} {name!r}{did_you_mean(name, choices)}; choose from {', '.join(choices)}")


def _dicom_window(ct: data.CTSlice) -> Window | None:
    ds = ct.dataset
    if ds is None or "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        center, width = (float(v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v)
                         for v in (ds.WindowCenter, ds.WindowWidth))
    except (TypeError, ValueError):
        return None
    if not width > 0:
        return None
    return Window(f"dicom {center:g}/{width:g}", (center - width / 2, center + width / 2))


def choose_window(ct: data.CTSlice | None, requested: str = AUTO) -> Window:
    """The window for ``ct``'s pictures: ``requested`` when it names one, else (:data:`AUTO`) the DICOM's own, a
    head's brain window, or the soft-tissue window (also for a measured scan, ``ct`` None)."""
    if requested != AUTO:
        return named(requested)
    if ct is not None:
        own = _dicom_window(ct)
        if own is not None:
            return own
        body = str(ct.dataset.get("BodyPartExamined", "") if ct.dataset is not None else "").upper()
        if any(part in body for part in HEAD_PARTS):
            return named("brain")
    return named("soft_tissue")


__all__ = ["AUTO", "HEAD_PARTS", "Window", "check_window", "choose_window", "named"]
