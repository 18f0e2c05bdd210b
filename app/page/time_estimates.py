"""The methods' estimated times on the server, for the sidebar: beside each method, under the method list and for
the first working size (:func:`sparsect.app.page.compute.default_working_size`).

The sidebar shows the working size before the methods and their settings, so the estimates read the methods'
widgets from the session state (their defaults before they are first drawn). The server's calibration is measured
once per process and device (``st.cache_resource``; also cached on disk by :mod:`sparsect.reconstruct.calibration`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import streamlit as st

from sparsect.app import settings as settings_module
from sparsect.app.page import compute as pc
from sparsect.app.page import keys
from sparsect.reconstruct import calibration, registry

log = logging.getLogger("sparsect.page")


@st.cache_resource(show_spinner="Timing this server (once)...", max_entries=8)
def server_calibration(device: str, networks: tuple[tuple[str, str], ...], path: str) -> calibration.Calibration:
    """The server's :class:`calibration.Calibration` on ``device`` with the step rates of ``networks``, cached in
    the file ``path``."""
    return calibration.machine_calibration(device, networks, Path(path))


def ticked(state: MutableMapping[str, Any]) -> list[str]:
    """The methods ticked in the sidebar (those of :data:`registry.PAGE_METHODS` before the boxes are drawn)."""
    return [m for m in registry.METHODS if state.get(f"use_{m}", m in registry.PAGE_METHODS)]


def seconds(methods: Iterable[str], shape: tuple[int, int] | None, state: MutableMapping[str, Any]) -> dict[str, float]:
    """Each of ``methods``' estimated seconds on an (H, W) ``shape`` grid with the sidebar's settings as they stand;
    {} without a grid or when they cannot be estimated (an estimate never keeps the page from working)."""
    methods = list(methods)
    if shape is None or not methods:
        return {}
    preset = state.get("preset", registry.PRESETS[0])
    variants = state.get("variants", pc.variant_options()[1])
    try:
        device = settings_module.parse_device("auto")
        networks = tuple((m, preset) for m in registry.NETWORK_METHODS)
        rates = server_calibration(device, networks, str(calibration.cache_file()))
        return pc.method_estimates(methods, shape, int(state.get(keys.VIEWS, 60)), state.get("iters_classical"),
                                   state.get("iters_neural"), preset, variants, rates)
    except Exception:  # noqa: BLE001 - e.g. an unwritable cache folder: the page works without estimates
        log.debug("no time estimate", exc_info=True)
        return {}


def total(methods: Iterable[str], shape: tuple[int, int], state: MutableMapping[str, Any]) -> float:
    """The estimated seconds of ``methods`` together on ``shape`` (0 when they cannot be estimated)."""
    return sum(seconds(methods, shape, state).values())


__all__ = ["seconds", "server_calibration", "ticked", "total"]
