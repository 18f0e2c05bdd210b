"""sparsect comparison page (Streamlit): ``sparsect app`` or ``streamlit run app/page/main.py``.

Only widgets live here; the computation is in app/page/compute.py, pictures in app/page/figures.py and
the reader-study helpers in app/page/reader.py.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from sparsect import data
from sparsect.app import pipeline
from sparsect.app import settings as settings_module
from sparsect.app.help import SIMULATION_HELP
from sparsect.app.outputs import png_bytes
from sparsect.app.page import compute as pc
from sparsect.app.page import figures as pf
from sparsect.app.page import measured as page_measured
from sparsect.app.page import pacs as page_pacs
from sparsect.app.page import reader as pr
from sparsect.app.page.run_cache import RunCache
from sparsect.reconstruct import registry

SIZES = {"64 x 64": 64, "128 x 128": 128, "256 x 256": 256, "512 x 512": 512, "Original": None}
VIEW_PRESETS = (30, 60, 90, 120, 180)
PHOTONS = (1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6)
PREVIEW_SECONDS = 2.0
TILE = 384

st.set_page_config(page_title="sparsect - sparse-view CT", page_icon=":material/radiology:", layout="wide")
st.markdown("""<style>
.block-container {padding-top: 1.2rem; padding-bottom: 2rem;}
[data-testid="stSidebar"] .stButton button {padding: 0.2rem 0.3rem; min-height: 2rem;}
[data-testid="stCaptionContainer"] {text-align: center;}
</style>""", unsafe_allow_html=True)

state = st.session_state
state.setdefault("results", {})
state.setdefault("sims", pc.LRU(4))
state.setdefault("uploads", pc.LRU(2))
state.setdefault("reader_seed", int(time.time_ns() % 1_000_000))
state.setdefault("reader_revealed", False)


@st.cache_resource(show_spinner=False, max_entries=8)
def sample_slice(name: str, size: int | None) -> data.CTSlice:
    return pc.prepare_slice(data.load_sample(name), size)


@st.cache_resource(show_spinner=False)
def server_runs() -> RunCache:
    """Finished runs of every session of this server: a reload gets them back (see app/page/run_cache.py)."""
    return RunCache()


def set_views(value: int) -> None:
    state["views"] = value


def fmt_photons(value: float) -> str:
    return f"{value:,.0f}"


# ----------------------------------------------------------------------------------------------------
# Sidebar: input
# ----------------------------------------------------------------------------------------------------
sb = st.sidebar
sb.title("sparsect")
sb.caption("Simulate a sparse-view CT scan of a slice and compare reconstructions against it.")

sb.header("1 Input", divider="gray")
source = sb.radio("Source", ["Sample", "Upload DICOM", "Load from PACS", "Measured scan"], horizontal=True,
                  key="source")
if source == "Measured scan":  # its own flow: no simulation, no ground truth (app/page/measured.py)
    page_measured.render(st, state)
    st.stop()
size = SIZES[sb.selectbox("Working size", list(SIZES), index=1, key="size",
                          help="The grid the methods reconstruct on. The scan is simulated from the slice's own "
                               "pixels when they are at least 2x finer, else from the slice upsampled (bilinear) "
                               "to 2x.")]
ct: data.CTSlice | None = None
input_key = ""
input_error: str | None = None  # shown in the main pane
input_skipped: list[tuple[str, str]] = []
if source == "Sample":
    samples = data.samples()
    name = sb.selectbox("Sample", list(samples), key="sample", help="Bundled with pydicom / scikit-image.")
    sb.caption(samples[name])
    try:
        ct = sample_slice(name, size)
        input_key = f"sample:{name}:{size}"
    except (data.DicomError, pipeline.InputError, ValueError) as exc:
        input_error = f"The sample could not be loaded: {exc}"
else:
    if source == "Load from PACS":
        files = page_pacs.load_widget(sb, state)
    else:
        uploaded = sb.file_uploader("DICOM files or a .zip of a series folder", accept_multiple_files=True,
                                    key="upload", help="Processed in memory only; nothing is written to disk.\n\n"
                                    + data.errors.SUPPORTED)
        files = [(f.name, f.getvalue()) for f in uploaded] if uploaded else None
    if files:
        digest = pc.upload_digest(files)
        summary = state["uploads"].get(digest) or state["uploads"].put(digest, pc.read_uploads(files))
        if summary.skipped and summary.series:
            with sb.expander(f"{len(summary.skipped)} file(s) skipped"):
                for file_name, reason in summary.skipped[:50]:
                    st.caption(f"**{Path(file_name).name}**: {reason}")
        if summary.error:
            input_error, input_skipped = summary.error, summary.skipped
            sb.warning("This upload cannot be used; the reason is shown on the right.", icon=":material/error:")
        else:
            series_index = 0
            if len(summary.series) > 1:
                series_index = sb.selectbox("Series", range(len(summary.series)), key="series",
                                            format_func=lambda i: pc.series_label(summary.series[i]))
            series = summary.series[series_index]
            n = len(series)
            slice_index = n // 2
            if n > 1:
                slice_index = sb.slider("Slice", 0, n - 1, n // 2, key="slice_index")
            sb.image(pf.thumbnail(series.hu[slice_index]), caption=f"{pc.series_label(series)}: slice "
                     f"{slice_index + 1}/{n}", width=160)
            try:
                ct = pc.prepare_slice(series.slice(slice_index), size)
                input_key = f"upload:{digest}:{series_index}:{slice_index}:{size}"
            except (pipeline.InputError, ValueError, IndexError) as exc:
                input_error = f"This slice cannot be used: {exc}"
    elif source == "Upload DICOM":
        sb.info("Upload one or more CT DICOM files (one series), or a .zip of the series folder.")

# ----------------------------------------------------------------------------------------------------
# Sidebar: scan
# ----------------------------------------------------------------------------------------------------
sb.header("2 Sparse scan", divider="gray")
state.setdefault("views", 60)
preset_cols = sb.columns(len(VIEW_PRESETS))
for col, value in zip(preset_cols, VIEW_PRESETS, strict=True):
    col.button(str(value), key=f"views_{value}", on_click=set_views, args=(value,), width="stretch",
               type="primary" if state["views"] == value else "secondary")
views = sb.slider("Number of views", 4, 360, key="views")
beam = sb.radio("Beam", settings_module.BEAMS, horizontal=True, key="beam", format_func=str.capitalize,
                help="Parallel beam over a half turn, or fan beam (flat detector) over a full turn.")
source_mm = detector_mm = None
if beam == "fan":
    fan_cols = sb.columns(2)
    source_mm = fan_cols[0].number_input("Source distance (mm)", 0.0, 5000.0, 0.0, step=50.0, key="source_mm",
                                         help="Source to rotation centre; 0 = twice the image diagonal.") or None
    detector_mm = fan_cols[1].number_input("Detector distance (mm)", 0.0, 5000.0, 0.0, step=50.0,
                                           key="detector_mm",
                                           help="Rotation centre to detector; 0 = one image diagonal.") or None
arc_deg = sb.slider("Arc (degrees)", 90, 360, 360 if beam == "fan" else 180, step=15, key=f"arc_{beam}")
low_dose = sb.toggle("Low-dose noise", value=False, key="low_dose",
                     help="Poisson noise on the detected photon counts.")
photons = None
if low_dose:
    photons = sb.select_slider("Photons per ray", PHOTONS, value=1e5, format_func=fmt_photons, key="photons")
det_count = sb.number_input("Detector bins (0 = automatic)", 0, 4096, 0, step=16, key="det_count",
                            help="Automatic covers the whole image diagonal.")
simulation_name = sb.selectbox("Simulation", settings_module.SIMULATIONS, key="simulation",
                               format_func=lambda name: pc.SIMULATION_LABELS[name], help=SIMULATION_HELP)
try:
    scan = settings_module.scan_settings(views=int(views), arc=math.radians(arc_deg), photons=photons,
                                         det_count=int(det_count) or None, geometry=beam, simulation=simulation_name,
                                         size=size, source_distance_mm=source_mm, detector_distance_mm=detector_mm)
except pipeline.InputError as exc:
    sb.error(f"These scan settings cannot be used: {exc}")
    st.stop()

# ----------------------------------------------------------------------------------------------------
# Sidebar: methods
# ----------------------------------------------------------------------------------------------------
sb.header("3 Methods", divider="gray")
defaults = {"fbp": True, "cgls": True, "lrnn": True}
method_cols = sb.columns(2)
chosen: list[str] = []
for i, method in enumerate(registry.METHODS):
    if method_cols[i % 2].checkbox(pc.label(method), value=defaults.get(method, False), key=f"use_{method}"):
        chosen.append(method)
preset = sb.selectbox("Network preset", registry.PRESETS, key="preset",
                      help="preview: 128x128 in under a minute on a laptop CPU; paper and quality take longer.")
variant_options, variant_default = pc.variant_options()
variants = sb.multiselect("Network fit options", variant_options, default=variant_default, key="variants",
                          format_func=pc.variant_label, help=pc.VARIANT_HELP,
                          placeholder="None: the published formulation")
it_cols = sb.columns(2)
default_budgets = ", ".join(str(registry.iterations_for(m, None)) for m in ("sirt", "cgls", "os_sart", "tv"))
iters_classical = it_cols[0].number_input("Iterations (classical)", 1, 5000, None, step=10, key="iters_classical",
                                          placeholder="default",
                                          help=f"SIRT, CGLS, OS-SART, TV; empty = each method's default "
                                               f"({default_budgets}).")
iters_neural = it_cols[1].number_input("Iterations (networks)", 1, 50000, None, step=50, key="iters_neural",
                                       placeholder="preset", help="LRNN, WIRE, SIREN main loop (the warm start "
                                                                  "comes on top); empty = the preset's budget.")
device = settings_module.parse_device("auto")
if device.startswith("cuda"):
    sb.caption(f":material/memory: Device: **GPU** ({torch.cuda.get_device_name(0)})")
else:
    sb.caption(f":material/memory: Device: **CPU** ({torch.get_num_threads()} threads)")

run_clicked = sb.button("Run", type="primary", key="run", width="stretch", disabled=ct is None or not chosen,
                        icon=":material/play_arrow:")
reader_mode = sb.toggle("Reader study mode", key="reader_mode",
                        help="Show the methods under random labels, without names or metrics.")

# ----------------------------------------------------------------------------------------------------
# Main area
# ----------------------------------------------------------------------------------------------------
if ct is None:
    st.title("Sparse-view CT reconstruction")
    if input_error:
        st.error(input_error)
        if len(input_skipped) > 1:
            with st.expander(f"{len(input_skipped)} file(s) skipped", expanded=True):
                for file_name, reason in input_skipped[:50]:
                    st.caption(f"**{Path(file_name).name}**: {reason}")
    else:
        st.info("Pick a sample or upload a CT series in the sidebar to start.")
    st.stop()

sim_key = (input_key, scan)
simulation = state["sims"].get(sim_key)
if simulation is None:
    try:
        simulation = state["sims"].put(sim_key, pipeline.simulate(ct, scan))
    except (pipeline.InputError, ValueError) as exc:
        st.error(f"The scan cannot be simulated with these settings: {exc}")
        st.stop()
truth = simulation.reference_hu  # what every score and difference map compares against
try:
    settings = {m: pc.method_settings(m, iters_classical, iters_neural, preset, "auto", variants) for m in chosen}
except pipeline.InputError as exc:
    st.error(f"These settings cannot be used: {exc}")
    st.stop()
keys = {m: pc.run_key(input_key, scan, m, settings[m]) for m in chosen}

cache = server_runs()
job: pc.Job | None = state.get("job")
if run_clicked and (job is None or not job.running):
    todo = [pc.Task(keys[m], m, settings[m]) for m in chosen
            if keys[m] not in state["results"] or state["results"][keys[m]].stopped]
    if todo:
        job = state["job"] = pc.Job(todo, simulation).start()
        cache.watch(job)
    else:
        st.toast("Already computed for these settings.")


def collect(finished: pc.Job) -> None:
    if not finished.collected:
        state["results"].update(finished.results)
        for key, run in finished.results.items():
            cache.put(key, run)
        finished.collected = True


if job is not None and not job.running:
    collect(job)

runs = [state["results"][keys[m]] for m in chosen if keys[m] in state["results"]]
missing = [m for m in chosen if keys[m] not in state["results"]]
labels = pr.blind_labels([r.method for r in runs], state["reader_seed"]) if runs else {}
blind_name = {m: f"Method {lab}" for lab, m in labels.items()}

st.title("Sparse-view CT reconstruction")
views_text = f"{scan.views} views over {arc_deg} degrees, {beam} beam" + (
    f", {fmt_photons(photons)} photons per ray" if photons else ", noise-free")
grid_h, grid_w = simulation.simulation_grid
st.caption(f"{'Sample ' + state.get('sample', '') if source == 'Sample' else 'Uploaded series'} on a "
           f"{truth.shape[0]} x {truth.shape[1]} working grid | {views_text} | "
           f"{simulation.sinogram.shape[1]} detector bins | {simulation.label} simulation "
           f"({grid_h} x {grid_w} grid, {simulation.sub_rays} ray(s) per bin)")

progress_box = st.container()

# ---------------------------------------------------------------------------------------------- input row
with st.expander("Input slice and sparse sinogram", expanded=not runs):
    c1, c2, c3 = st.columns([1, 1, 1])
    c1.image(pf.tile(truth, pf.window_from("soft_tissue"), 320), caption="Ground truth (soft tissue window)",
             width="stretch")
    c2.image(pf.sinogram_image(simulation.sinogram.detach().cpu().numpy(), int(simulation.sinogram.shape[1])),
             caption=f"Sparse sinogram: {scan.views} views x {simulation.sinogram.shape[1]} bins",
             width="stretch")
    with c3:
        st.markdown("**Slice**")
        st.dataframe(pd.DataFrame({"value": {k: str(v) for k, v in pc.describe(ct).items()}}), width="stretch")
        if ct.dataset is not None and st.toggle("Show identifying DICOM fields", key="show_phi",
                                                help="Patient and study attributes of the source file."):
            fields = pc.identifying_fields(ct)
            if fields:
                st.json(fields)
            else:
                st.caption("No identifying fields present.")

kept = cache.find(keys[m] for m in missing) if missing and not (job is not None and job.running) else {}
if kept:
    names = ", ".join(pc.label(run.method) for run in kept.values())
    k1, k2 = st.columns([4, 1])
    k1.info(f"Finished results for these settings are kept on this server: {names}.")
    if k2.button("Restore", key="restore_runs", icon=":material/history:", width="stretch"):
        state["results"].update(kept)
        st.rerun()
if missing and not (job is not None and job.running):
    st.info(f"Press **Run** to reconstruct with {', '.join(pc.label(m) for m in missing)} "
            "(results are kept for these settings).")

# ---------------------------------------------------------------------------------------------- display controls


def window_controls(prefix: str) -> tuple[float, float]:
    cols = st.columns([2, 1, 1])
    presets = list(pf.WINDOW_PRESETS)
    choice = cols[0].selectbox("Window / level", presets, index=presets.index("soft_tissue"), key="window",
                               format_func=lambda k: pf.WINDOW_PRESETS[k][0])
    if choice == "custom":
        center = cols[1].number_input("Centre (HU)", -1500, 3000, 40, key=f"{prefix}_wc")
        width = cols[2].number_input("Width (HU)", 1, 6000, 400, key=f"{prefix}_ww")
        return pf.window_from("custom", float(center), float(width))
    low, high = pf.window_from(choice)
    cols[1].caption(f"Window: {low:.0f} to {high:.0f} HU")
    return low, high


def grid(images: dict[str, np.ndarray], window: tuple[float, float], zoom: pf.Zoom | None,
         outline: pf.Zoom | None, profile: tuple[str, int] | None, per_row: int) -> None:
    names = list(images)
    for start in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, names[start:start + per_row], strict=False):
            first = name == names[0]
            col.image(pf.tile(images[name], window, TILE, zoom=zoom, outline=outline if first else None,
                              profile=profile if first else None), caption=name, width="stretch")


h, w = truth.shape
per_row = min(4, len(runs) + 1)

if reader_mode:
    # ------------------------------------------------------------------------------------------ reader study
    st.subheader("Reader study")
    if len(runs) < 2:
        st.info("Run at least two methods to start a blinded reading.")
    else:
        window = window_controls("reader")
        study = f"{state['reader_seed']:06d}"
        reader = st.text_input("Reader", key="reader_name", placeholder="initials",
                               help="Each reader sees the images in an order of their own.").strip()
        st.caption(f"Study {study}: {len(labels)} reconstructions under random labels. Score each for "
                   "diagnostic quality and artifacts, rank them (1 = best), then download the ratings.")
        if not reader:
            st.info("Enter your initials to start the reading.")
        else:
            show_reference = st.checkbox("Show the full-view reference", value=True, key="reader_reference")
            by_method = {r.method: r for r in runs}
            order = pr.reading_order(list(labels), study, reader)
            cols = st.columns(len(order) + (1 if show_reference else 0))
            if show_reference:
                cols[0].image(pf.tile(truth, window, TILE), caption="Reference", width="stretch")
                cols = cols[1:]
            ratings: dict[str, dict[str, object]] = {}
            for col, lab in zip(cols, order, strict=True):
                with col:
                    st.image(pf.tile(by_method[labels[lab]].image_hu, window, TILE), caption=f"Image {lab}",
                             width="stretch")
                    ratings[lab] = {
                        "quality": st.slider(f"{lab}: diagnostic quality", 1, 5, 3,
                                             key=pr.widget_key("q", study, reader, lab), help=pr.QUALITY_HELP),
                        "artifacts": st.slider(f"{lab}: artifacts", 1, 5, 3,
                                               key=pr.widget_key("a", study, reader, lab), help=pr.ARTIFACT_HELP),
                        "rank": st.selectbox(f"{lab}: rank", range(1, len(order) + 1), index=None,
                                             placeholder="rank", key=pr.widget_key("r", study, reader, lab)),
                        "comment": st.text_input(f"{lab}: comment", key=pr.widget_key("c", study, reader, lab)),
                    }
            if not pr.ranks_valid({lab: r["rank"] for lab, r in ratings.items()}):
                st.warning("Rank every image, each rank once (1 = best).")
            csv_bytes = pr.ratings_csv(study, reader, labels, ratings, state["reader_revealed"], order)
            state["reader_csv"] = csv_bytes
            b1, b2, b3 = st.columns(3)
            b1.download_button("Download ratings (CSV)", csv_bytes, file_name=f"sparsect_reader_{study}.csv",
                               mime="text/csv", key="reader_download", icon=":material/download:", width="stretch")
            if b2.button("Reveal methods", key="reveal", icon=":material/visibility:", width="stretch"):
                state["reader_revealed"] = True
                st.rerun()
        if st.button("New study (reshuffle)", key="reshuffle", icon=":material/shuffle:"):
            state["reader_seed"] = int(time.time_ns() % 1_000_000)
            state["reader_revealed"] = False
            st.rerun()
        if state["reader_revealed"]:
            st.success("Unblinded: " + ", ".join(f"{lab} = {pc.label(labels[lab])}" for lab in sorted(labels)))
elif runs:
    # ------------------------------------------------------------------------------------------ comparison
    st.subheader("Comparison")
    window = window_controls("cmp")
    z1, z2, z3, z4 = st.columns([1, 1, 1, 1])
    zoom_on = z1.toggle("Zoom", key="zoom", help="Magnify the same region in every image.")
    zoom = outline = None
    if zoom_on:
        factor = z2.select_slider("Magnification", [1.5, 2.0, 3.0, 4.0, 6.0], value=2.0, key="zoom_factor",
                                  format_func=lambda f: f"{f:g}x")
        cx = z3.slider("Region centre x (column)", 0, w - 1, w // 2, key="zoom_x")
        cy = z4.slider("Region centre y (row)", 0, h - 1, h // 2, key="zoom_y")
        outline = pf.Zoom(cx, cy, factor)
    images = {"Ground truth": truth} | {pc.label(r.method): r.image_hu for r in runs}
    grid(images, window, None, outline, None, per_row)
    if outline is not None:
        st.caption(f"Zoomed region ({outline.factor:g}x), outlined in yellow on the ground truth")
        zoom = outline
        grid(images, window, zoom, None, None, per_row)

    # metrics
    st.subheader("Metrics")
    rows = pc.metrics_rows(runs, truth, window)
    table = pd.DataFrame(rows).set_index("Method")
    best = pc.best_cells(rows)

    def highlight(column: pd.Series) -> list[str]:
        index = best.get(column.name)
        return ["background-color: rgba(245, 183, 0, 0.35); font-weight: 700" if i == index else ""
                for i in range(len(column))]

    styled = table.style.apply(highlight, axis=0).format(
        {"PSNR (dB)": "{:.2f}", "SSIM": "{:.4f}", "RMSE (HU)": "{:.1f}", "PSNR range (dB)": "{:.2f}",
         "SSIM range": "{:.4f}", "RMSE soft tissue (HU)": "{:.1f}", "PSNR window (dB)": "{:.2f}",
         "SSIM window": "{:.4f}", "Time (s)": "{:.2f}", "Parameters": "{:,}"}, na_rep="-")
    st.dataframe(styled, width="stretch", key="metrics_table")
    st.caption(pc.METRICS_HELP)

    tabs = st.tabs(["Difference maps", "Line profile", "Loss curves", "Downloads"])
    with tabs[0]:
        suggested = pf.difference_default(window)
        auto = pf.difference_limit([r.image_hu - truth for r in runs])
        choices = sorted({10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, suggested, auto})
        limit = st.select_slider("Colour range (+/- HU)", choices, value=suggested,
                                 key=f"diff_limit_{window[0]:g}_{window[1]:g}", format_func=lambda v: f"{v:g}",
                                 help=f"Default: a quarter of the window's width ({suggested:g} HU); "
                                      f"{auto:g} HU covers 99 % of the largest difference.")
        tiles = [(f"{pc.label(r.method)} - ground truth", pf.difference_tile(r.image_hu, truth, limit, TILE, zoom=zoom))
                 for r in runs]
        for start in range(0, len(tiles), per_row):
            cols = st.columns(per_row)
            for col, (caption, picture) in zip(cols, tiles[start:start + per_row], strict=False):
                col.image(picture, caption=caption, width="stretch")
        st.image(pf.colorbar(limit, 640), width=640)
        st.caption("Difference in HU, one symmetric colour scale for all methods (red: too dense, blue: too light); "
                   "grey outside the reconstruction circle, where no method is scored")
    with tabs[1]:
        p1, p2 = st.columns([1, 3])
        axis = p1.radio("Direction", ["row", "column"], horizontal=True, key="profile_axis",
                        format_func=lambda a: "Horizontal" if a == "row" else "Vertical")
        limit_index = (h if axis == "row" else w) - 1
        index = p2.slider("Row" if axis == "row" else "Column", 0, limit_index, limit_index // 2,
                          key=f"profile_{axis}")
        p1.image(pf.tile(truth, window, 256, profile=(axis, index)), caption="Profile line", width="stretch")
        prof = pf.profile(images, axis, index)
        p2.line_chart(pd.DataFrame(prof).rename_axis("pixel"), x_label="pixel", y_label="HU", height=320,
                      color=pf.profile_colours(list(prof)))
    with tabs[2]:
        curves = {pc.label(r.method): np.asarray(r.reconstruction.curve, dtype=np.float64) for r in runs
                  if len(r.reconstruction.curve) > 1}
        if curves:
            import altair as alt

            long = pd.concat([pd.DataFrame({"iteration": np.arange(1, len(c) + 1), "relative loss": c / c[0],
                                            "method": name}) for name, c in curves.items() if c[0] > 0])
            chart = alt.Chart(long).mark_line().encode(
                x="iteration:Q", y=alt.Y("relative loss:Q", scale=alt.Scale(type="log")), color="method:N")
            st.altair_chart(chart, width="stretch")
            st.caption("Each curve relative to its first iteration: data residual (SIRT, CGLS), objective (TV), "
                       "sinogram MSE (networks).")
        else:
            st.caption("No iterative method has been run (FBP is direct).")
    with tabs[3]:
        d1, d2, d4, d3 = st.columns(4)
        sheet = pf.comparison_sheet(images, window)
        d1.download_button("Comparison (PNG)", png_bytes(sheet), file_name="sparsect_comparison.png",
                           mime="image/png", key="dl_png", icon=":material/image:", width="stretch")
        d2.download_button("All results (NPZ)", pc.results_npz(ct, simulation, runs, scan),
                           file_name="sparsect_results.npz", mime="application/octet-stream", key="dl_npz",
                           icon=":material/data_array:", width="stretch")
        d4.download_button("Metrics (CSV)", pc.metrics_csv(runs, scan.views, simulation),
                           file_name="sparsect_metrics.csv", mime="text/csv", key="dl_csv", icon=":material/table:",
                           width="stretch")
        keep_phi = d3.checkbox("Keep patient and study fields", value=False, key="dicom_keep_phi",
                               help="Off: the derived series are de-identified (DICOM PS3.15 basic profile).")
        d3.download_button("Derived DICOM series (ZIP)",
                           lambda: pc.dicom_zip(ct, runs, scan.views, anonymize=not keep_phi),
                           file_name="sparsect_dicom.zip", mime="application/zip", key="dl_dicom",
                           icon=":material/folder_zip:", width="stretch")
        if source == "Load from PACS":
            page_pacs.send_widget(d3, state, ct, runs, scan.views, {r.method: pc.label(r.method) for r in runs})

# ---------------------------------------------------------------------------------------------- errors of the last run
if job is not None and not job.running:
    for p in job.progress.values():
        if p.error:
            progress_box.error(p.error)

# ---------------------------------------------------------------------------------------------- live progress
if job is not None and job.running:
    with progress_box:
        st.button("Stop", key="stop", on_click=job.request_stop, icon=":material/stop:",
                  help="Stop now and keep the result so far.")
        bars, previews = {}, {}
        order = list(job.progress)
        pcols = st.columns([3, 1])
        with pcols[0]:
            for m in order:
                bars[m] = st.empty()
        preview_slot = pcols[1].empty()
        last_preview = 0.0
        shown = None
        while job.running:
            for k, m in enumerate(order):
                p = job.progress[m]
                name = f"Method {k + 1}" if reader_mode else None
                bars[m].progress(p.fraction, text=p.text(name))
            now = time.perf_counter()
            current = next((p for p in job.progress.values() if p.status == "running"), None)
            if current is not None and current.preview_hu is not None and now - last_preview >= PREVIEW_SECONDS \
                    and (current.method, current.preview_iteration) != shown:
                caption = "preview" if reader_mode else f"{pc.label(current.method)} preview, " \
                                                        f"iteration {current.preview_iteration}"
                preview_slot.image(pf.tile(current.preview_hu, pf.window_from("soft_tissue"), 256),
                                   caption=caption, width="stretch")
                shown, last_preview = (current.method, current.preview_iteration), now
            time.sleep(0.25)
    collect(job)
    st.rerun()
