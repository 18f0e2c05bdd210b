"""The sidebar sections of the comparison page: input, sparse scan and methods. Each wires its widgets to
the pure helpers of app/page/compute.py and returns what the user chose; nothing here computes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from sparsect import data
from sparsect.app import scans
from sparsect.app import settings as settings_module
from sparsect.app.help import SIMULATION_HELP
from sparsect.app.page import compute as pc
from sparsect.app.page import figures as pf
from sparsect.app.page import keys, uploads
from sparsect.app.page import pacs as page_pacs
from sparsect.app.page import time_estimates as te
from sparsect.reconstruct import registry
from sparsect.reconstruct.estimate import format_duration

SOURCES = ("Sample", "Upload DICOM", "Load from PACS", "Measured scan")
MEASURED, PACS = "Measured scan", "Load from PACS"
SIZES = {"64 x 64": 64, "128 x 128": 128, "256 x 256": 256, "512 x 512": 512, "Original": None}
#: The first working size when the ticked methods cannot be estimated.
FALLBACK_SIZE = 128
VIEW_PRESETS = (30, 60, 90, 120, 180)
PHOTONS = (1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6)
SIZE_HELP = ("The grid the methods reconstruct on. The scan is simulated from the slice's own pixels when they "
             "are at least 2x finer, else from the slice upsampled (bilinear) to 2x.")


@dataclass
class InputChoice:
    """The slice to scan (None with ``error`` or before an upload), ``key`` naming it in run keys."""

    source: str
    ct: data.CTSlice | None = None
    _: KW_ONLY  # the rest by name: a key given in size's place once made every input's run key ""
    size: int | None = None
    key: str = ""
    error: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def working_shape(self) -> tuple[int, int] | None:
        """The (H, W) grid the methods reconstruct on; None without a slice."""
        if self.ct is None:
            return None
        return tuple(self.ct.hu.shape) if self.size is None else (self.size, self.size)


@dataclass
class ScanChoice:
    settings: settings_module.ScanSettings
    arc_deg: int
    beam: str
    photons: float | None


@dataclass
class MethodChoice:
    chosen: list[str]
    preset: str
    variants: list[str]
    iterations_classical: int | None
    iterations_neural: int | None
    run_clicked: bool
    reader_mode: bool


def fmt_photons(value: float) -> str:
    return f"{value:,.0f}"


def show_skipped(container: Any, skipped: list[tuple[str, str]], expanded: bool = False) -> None:
    """The files of an upload that were skipped, with why (at most 50)."""
    with container.expander(f"{len(skipped)} file(s) skipped", expanded=expanded):
        for file_name, reason in skipped[:50]:
            st.caption(f"**{Path(file_name).name}**: {reason}")


def source_section(sb: Any) -> str:
    """Title and the input source radio."""
    sb.title("sparsect")
    sb.caption("Simulate a sparse-view CT scan of a slice and compare reconstructions against it.")
    sb.header("1 Input", divider="gray")
    sources = [s for s in SOURCES if s != PACS or page_pacs.available()]  # only with an operator-set PACS
    return sb.radio("Source", sources, horizontal=True, key="source")


#: Makes the slice for a working size (None: its own grid).
Prepare = Callable[[int | None], data.CTSlice]


def input_section(sb: Any, source: str, sample_slice: Callable[[str, int | None], data.CTSlice]) -> InputChoice:
    """Working size and the slice of a sample, an upload or the PACS; ``sample_slice`` is the cached loader. The
    size is drawn above the slice's pickers but chosen after them: its first value depends on the slice's grid."""
    size_box = sb.container()
    choice, prepare = _slice_input(sb, source, sample_slice)
    size = _working_size(size_box, None if choice.ct is None else tuple(choice.ct.hu.shape))
    choice.size = size
    if choice.ct is not None:
        choice.key = f"{choice.key}:{size}"
    if prepare is not None and size is not None:
        try:
            choice.ct = prepare(size)
        except (data.DicomError, ValueError, IndexError) as exc:
            return InputChoice(source, error=f"This slice cannot be used on a {size} x {size} grid: {exc}")
    return choice


def _size_chosen() -> None:
    st.session_state[keys.SIZE_CHOSEN] = True


def _working_size(box: Any, own_shape: tuple[int, int] | None) -> int | None:
    """The working size selection; until the visitor picks one, :func:`compute.default_working_size` for the ticked
    methods' estimate (:data:`FALLBACK_SIZE` without one), shown under it."""
    state = st.session_state
    methods = te.ticked(state)

    known: dict[tuple[int, int], float] = {}

    def seconds_at(shape: tuple[int, int]) -> float:  # each grid estimated once per rerun
        if shape not in known:
            known[shape] = te.total(methods, shape, state)
        return known[shape]

    if "size" not in state:  # not drawn last time (the measured-scan mode): automatic again
        state[keys.SIZE_CHOSEN] = False
    automatic = not state.get(keys.SIZE_CHOSEN)
    if automatic:
        size = FALLBACK_SIZE
        if own_shape is not None and seconds_at(own_shape):
            size, _ = pc.default_working_size(own_shape, [s for s in SIZES.values() if s], seconds_at)
        state["size"] = next(label for label, value in SIZES.items() if value == size)
    size = SIZES[box.selectbox("Working size", list(SIZES), key="size", help=SIZE_HELP, on_change=_size_chosen)]
    shape = own_shape if size is None or own_shape is None else (size, size)
    spent = seconds_at(shape) if shape is not None else 0.0
    if spent:
        why = ""
        if automatic and size is not None:
            why = ("; the largest grid they take under a minute on" if spent < pc.QUICK_RUN_SECONDS
                   else "; the smallest grid offered")
        box.caption(f"Ticked methods: {format_duration(spent)} on this server at {shape[0]} x {shape[1]}{why}.")
    return size


def _slice_input(sb: Any, source: str, sample_slice: Callable[[str, int | None], data.CTSlice]
                 ) -> tuple[InputChoice, Prepare | None]:
    """The slice on its own grid and how to make it for a working size (None with an error or no slice)."""
    if source == "Sample":
        samples = data.samples()
        name = sb.selectbox("Sample", list(samples), key="sample", help="Bundled with pydicom / scikit-image.")
        sb.caption(samples[name])
        try:
            ct = sample_slice(name, None)
        except (data.DicomError, ValueError) as exc:
            return InputChoice(source, error=f"The sample could not be loaded: {exc}"), None
        return InputChoice(source, ct, key=f"sample:{name}"), lambda size: sample_slice(name, size)
    if source == PACS:
        files = page_pacs.load_widget(sb, st.session_state)
    else:
        uploaded = sb.file_uploader("DICOM files or a .zip of a series folder", accept_multiple_files=True,
                                    key="upload", help="Processed in memory only; nothing is written to disk.\n\n"
                                    + data.errors.SUPPORTED)
        files = [(f.name, f.getvalue()) for f in uploaded] if uploaded else None
    if not files:
        if source != PACS:
            sb.info("Upload one or more CT DICOM files (one series), or a .zip of the series folder.")
        return InputChoice(source), None
    return _series_input(sb, source, files)


def _series_input(sb: Any, source: str, files: list[tuple[str, bytes]]) -> tuple[InputChoice, Prepare | None]:
    """Series and slice pickers of uploaded (or pulled) DICOM files."""
    digest = uploads.upload_digest(files)
    kept = st.session_state[keys.UPLOADS]
    summary = kept.get(digest) or kept.put(digest, uploads.read_uploads(files))
    if summary.skipped and summary.series:
        show_skipped(sb, summary.skipped)
    if summary.error:
        sb.warning("This upload cannot be used; the reason is shown on the right.", icon=":material/error:")
        return InputChoice(source, error=summary.error, skipped=summary.skipped), None
    series_index = 0
    if len(summary.series) > 1:
        series_index = sb.selectbox("Series", range(len(summary.series)), key="series",
                                    format_func=lambda i: uploads.series_label(summary.series[i]))
    series = summary.series[series_index]
    n = len(series)
    slice_index = sb.slider("Slice", 0, n - 1, n // 2, key="slice_index") if n > 1 else n // 2
    sb.image(pf.thumbnail(series.hu[slice_index]), caption=f"{uploads.series_label(series)}: slice "
             f"{slice_index + 1}/{n}", width=160)
    try:
        picked = series.slice(slice_index)
        ct = scans.prepare_slice(picked, None)
    except (ValueError, IndexError) as exc:
        return InputChoice(source, error=f"This slice cannot be used: {exc}"), None
    return (InputChoice(source, ct, key=f"upload:{digest}:{series_index}:{slice_index}"),
            lambda size: scans.prepare_slice(picked, size))


def _set_views(value: int) -> None:
    st.session_state[keys.VIEWS] = value


def _fan_distances(sb: Any) -> tuple[float | None, float | None]:
    cols = sb.columns(2)
    source_mm = cols[0].number_input("Source distance (mm)", 0.0, 5000.0, 0.0, step=50.0, key="source_mm",
                                     help="Source to rotation centre; 0 = twice the image diagonal.")
    detector_mm = cols[1].number_input("Detector distance (mm)", 0.0, 5000.0, 0.0, step=50.0, key="detector_mm",
                                       help="Rotation centre to detector; 0 = one image diagonal.")
    return source_mm or None, detector_mm or None


def scan_section(sb: Any, size: int | None) -> ScanChoice | None:
    """The sparse-scan settings, validated; None (with the reason shown) when they cannot be used."""
    sb.header("2 Sparse scan", divider="gray")
    for col, value in zip(sb.columns(len(VIEW_PRESETS)), VIEW_PRESETS, strict=True):
        col.button(str(value), key=f"views_{value}", on_click=_set_views, args=(value,), width="stretch",
                   type="primary" if st.session_state[keys.VIEWS] == value else "secondary")
    views = sb.slider("Number of views", 4, 360, key=keys.VIEWS)
    beam = sb.radio("Beam", settings_module.BEAMS, horizontal=True, key="beam", format_func=str.capitalize,
                    help="Parallel beam over a half turn, or fan beam (flat detector) over a full turn.")
    source_mm, detector_mm = _fan_distances(sb) if beam == "fan" else (None, None)
    arc_deg = sb.slider("Arc (degrees)", 90, 360, 360 if beam == "fan" else 180, step=15, key=f"arc_{beam}")
    low_dose = sb.toggle("Low-dose noise", value=False, key="low_dose",
                         help="Poisson noise on the detected photon counts.")
    photons = None
    if low_dose:
        photons = sb.select_slider("Photons per ray", PHOTONS, value=1e5, format_func=fmt_photons, key="photons")
    det_count = sb.number_input("Detector bins (0 = automatic)", 0, 4096, 0, step=16, key="det_count",
                                help="Automatic covers the whole image diagonal.")
    simulation = sb.selectbox("Simulation", settings_module.SIMULATIONS, key="simulation",
                              format_func=lambda name: pc.SIMULATION_LABELS[name], help=SIMULATION_HELP)
    try:
        scan = settings_module.scan_settings(views=int(views), arc=math.radians(arc_deg), photons=photons,
                                             det_count=int(det_count) or None, beam=beam, simulation=simulation,
                                             size=size, source_distance_mm=source_mm,
                                             detector_distance_mm=detector_mm)
    except settings_module.InputError as exc:
        sb.error(f"These scan settings cannot be used: {exc}")
        return None
    return ScanChoice(scan, arc_deg, beam, photons)


def _iteration_inputs(sb: Any) -> tuple[int | None, int | None]:
    cols = sb.columns(2)
    solvers = [m for m in registry.METHODS.values() if m.iterative and not m.is_network]
    names = ", ".join(m.label for m in solvers)
    budgets = ", ".join(str(m.default_iterations) for m in solvers)
    networks = ", ".join(registry.label(m) for m in registry.NETWORK_METHODS)
    classical = cols[0].number_input("Iterations (classical)", 1, 5000, None, step=10, key="iters_classical",
                                     placeholder="default",
                                     help=f"{names}; empty = each method's default ({budgets}).")
    neural = cols[1].number_input("Iterations (networks)", 1, 50000, None, step=50, key="iters_neural",
                                  placeholder="preset", help=f"{networks} main loop (the warm start comes on "
                                                             "top); empty = the preset's budget.")
    return classical, neural


def _timed_label(method: str, seconds: dict[str, float]) -> str:
    """A method's checkbox label: "LRNN ~1 min 40 s" with its estimate, else its name."""
    return f"{pc.label(method)} {format_duration(seconds[method])}" if method in seconds else pc.label(method)


def _device_caption(sb: Any) -> None:
    if settings_module.parse_device("auto").startswith("cuda"):
        sb.caption(f":material/memory: Device: **GPU** ({torch.cuda.get_device_name(0)})")
    else:
        sb.caption(f":material/memory: Device: **CPU** ({torch.get_num_threads()} threads)")


def methods_section(sb: Any, can_run: bool, shape: tuple[int, int] | None = None) -> MethodChoice:
    """Method checkboxes (each with its estimated time on an (H, W) ``shape`` grid), network preset and fit options,
    iteration budgets, Run and the reader-study toggle."""
    sb.header("3 Methods", divider="gray")
    method_cols = sb.columns(2)
    seconds = te.seconds(registry.METHODS, shape, st.session_state)
    chosen = [method for i, method in enumerate(registry.METHODS)
              if method_cols[i % 2].checkbox(_timed_label(method, seconds), value=method in registry.PAGE_METHODS,
                                             key=f"use_{method}")]
    if chosen and seconds:
        sb.caption(f"Estimated on this server: {format_duration(sum(seconds[m] for m in chosen))} for the ticked "
                   f"methods at {shape[0]} x {shape[1]}.")
    preset = sb.selectbox("Network preset", registry.PRESETS, key="preset",
                          help="preview: 128x128 in under a minute on a laptop CPU; paper and quality take longer.")
    variant_options, variant_default = pc.variant_options()
    variants = sb.multiselect("Network fit options", variant_options, default=variant_default, key="variants",
                              format_func=registry.variant_label, help=pc.variant_help(),
                              placeholder="None: the published formulation")
    iterations_classical, iterations_neural = _iteration_inputs(sb)
    _device_caption(sb)
    run_clicked = sb.button("Run", type="primary", key="run", width="stretch", disabled=not can_run or not chosen,
                            icon=":material/play_arrow:")
    reader_mode = sb.toggle("Reader study mode", key="reader_mode",
                            help="Show the methods under random labels, without names or metrics.")
    return MethodChoice(chosen, preset, variants, iterations_classical, iterations_neural, run_clicked, reader_mode)


__all__ = ["MEASURED", "PACS", "SIZES", "InputChoice", "MethodChoice", "ScanChoice", "input_section",
           "methods_section", "scan_section", "show_skipped", "source_section"]
