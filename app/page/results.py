"""The result sections of the comparison page: the image grid (with zoom), the metrics table and the tabs
(difference, data-consistency and uncertainty maps, line profile, loss curves, downloads). Pictures come
from app/page/figures.py, tables and downloads from app/page/compute.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from sparsect import data
from sparsect.app import outputs
from sparsect.app.outputs import png_bytes
from sparsect.app.page import compute as pc
from sparsect.app.page import figures as pf
from sparsect.app.page import pacs as page_pacs
from sparsect.app.run import Outcome
from sparsect.app.scans import Scan

TILE = 384  # pixels of one image of the grid
DIFFERENCE_STEPS = (10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
TABLE_FORMATS = {"PSNR (dB)": "{:.2f}", "SSIM": "{:.4f}", "RMSE (HU)": "{:.1f}", "PSNR range (dB)": "{:.2f}",
                 "SSIM range": "{:.4f}", "RMSE soft tissue (HU)": "{:.1f}", "PSNR window (dB)": "{:.2f}",
                 "SSIM window": "{:.4f}", "Time (s)": "{:.2f}", "Parameters": "{:,}"}
BEST_STYLE = "background-color: rgba(245, 183, 0, 0.35); font-weight: 700"


@dataclass
class Shown:
    """What the comparison shows: the runs, the ground truth, the scan and its input (for the downloads)."""

    runs: list[Outcome]
    truth: np.ndarray
    ct: data.CTSlice
    scan_data: Scan
    scan: Any  # settings.ScanSettings
    from_pacs: bool

    @property
    def per_row(self) -> int:
        return min(4, len(self.runs) + 1)

    def images(self) -> dict[str, np.ndarray]:
        return {"Ground truth": self.truth} | {pc.label(r.method): r.image_hu for r in self.runs}


def window_controls(prefix: str) -> tuple[float, float]:
    """Window / level preset (or custom centre and width); the (low, high) HU range."""
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


def image_grid(images: dict[str, np.ndarray], window: tuple[float, float], per_row: int,
               zoom: pf.Zoom | None = None, outline: pf.Zoom | None = None) -> None:
    """The images in rows of ``per_row``; the first (the ground truth) carries the zoom outline."""
    names = list(images)
    for start in range(0, len(names), per_row):
        for col, name in zip(st.columns(per_row), names[start:start + per_row], strict=False):
            first = name == names[0]
            col.image(pf.tile(images[name], window, TILE, zoom=zoom, outline=outline if first else None),
                      caption=name, width="stretch")


def _zoom_controls(shape: tuple[int, int]) -> pf.Zoom | None:
    h, w = shape
    z1, z2, z3, z4 = st.columns([1, 1, 1, 1])
    if not z1.toggle("Zoom", key="zoom", help="Magnify the same region in every image."):
        return None
    factor = z2.select_slider("Magnification", [1.5, 2.0, 3.0, 4.0, 6.0], value=2.0, key="zoom_factor",
                              format_func=lambda f: f"{f:g}x")
    cx = z3.slider("Region centre x (column)", 0, w - 1, w // 2, key="zoom_x")
    cy = z4.slider("Region centre y (row)", 0, h - 1, h // 2, key="zoom_y")
    return pf.Zoom(cx, cy, factor)


def comparison_section(shown: Shown) -> tuple[tuple[float, float], pf.Zoom | None]:
    """The window controls, the grid of every image and, zoomed in, the same region of each."""
    st.subheader("Comparison")
    window = window_controls("cmp")
    zoom = _zoom_controls(shown.truth.shape)
    images = shown.images()
    image_grid(images, window, shown.per_row, outline=zoom)
    if zoom is not None:
        st.caption(f"Zoomed region ({zoom.factor:g}x), outlined in yellow on the ground truth")
        image_grid(images, window, shown.per_row, zoom=zoom)
    return window, zoom


def metrics_section(runs: Sequence[Outcome], truth: np.ndarray, window: tuple[float, float]) -> None:
    """The metrics table, the best value of each ranked column highlighted."""
    st.subheader("Metrics")
    rows = pc.metrics_rows(runs, truth, window)
    best = pc.best_cells(rows)

    def highlight(column: pd.Series) -> list[str]:
        index = best.get(column.name)
        return [BEST_STYLE if i == index else "" for i in range(len(column))]

    styled = pd.DataFrame(rows).set_index("Method").style.apply(highlight, axis=0).format(TABLE_FORMATS, na_rep="-")
    st.dataframe(styled, width="stretch", key="metrics_table")
    st.caption(pc.METRICS_HELP)
    for run in runs:
        if pc.status(run) not in ("complete", "stopped early"):
            st.warning(f"{pc.label(run.method)}: {pc.status(run)}")
        for warning in run.warnings:
            st.caption(f":material/warning: {pc.label(run.method)}: {warning}")


def difference_section(shown: Shown, window: tuple[float, float], zoom: pf.Zoom | None) -> None:
    """Each method minus the ground truth on one symmetric colour scale, with its colour bar."""
    suggested = pf.difference_default(window)
    auto = pf.difference_limit([r.image_hu - shown.truth for r in shown.runs])
    limit = st.select_slider("Colour range (+/- HU)", sorted({*DIFFERENCE_STEPS, suggested, auto}), value=suggested,
                             key=f"diff_limit_{window[0]:g}_{window[1]:g}", format_func=lambda v: f"{v:g}",
                             help=f"Default: a quarter of the window's width ({suggested:g} HU); "
                                  f"{auto:g} HU covers 99 % of the largest difference.")
    tiles = [(f"{pc.label(r.method)} - ground truth", pf.difference_tile(r.image_hu, shown.truth, limit, TILE,
                                                                          zoom=zoom)) for r in shown.runs]
    per_row = shown.per_row
    for start in range(0, len(tiles), per_row):
        for col, (caption, picture) in zip(st.columns(per_row), tiles[start:start + per_row], strict=False):
            col.image(picture, caption=caption, width="stretch")
    st.image(pf.colorbar(limit, 640), width=640)
    st.caption("Difference in HU, one symmetric colour scale for all methods (red: too dense, blue: too light); "
               "grey outside the reconstruction circle, where no method is scored")


def _map_row(maps: dict[str, np.ndarray], signed: bool, per_row: int, zoom: pf.Zoom | None) -> float:
    """One row of labelled maps on one shared colour scale with its colour bar; returns the scale's limit."""
    limit = pf.difference_limit(list(maps.values()))
    names = list(maps)
    for start in range(0, len(names), per_row):
        for col, name in zip(st.columns(per_row), names[start:start + per_row], strict=False):
            col.image(pf.map_tile(maps[name], limit, TILE, signed=signed, zoom=zoom), caption=name, width="stretch")
    st.image(pf.colorbar(limit, 640, signed=signed), width=640)
    return limit


def trust_section(shown: Shown, zoom: pf.Zoom | None) -> None:
    """Where to trust each image: its data-consistency map and, for ensemble fits, the seeds' spread."""
    maps = outputs.trust_maps(shown.runs, name=lambda run: pc.label(run.method))
    st.markdown("**Data consistency**")
    _map_row(maps[outputs.CONSISTENCY], True, shown.per_row, zoom)
    st.caption("Filtered backprojection of each image's sinogram residual A x - y, in HU (one colour scale for all "
               "methods): 0 where the image explains the measured rays; red: more than the rays support, blue: "
               "less. A consistent image can still be wrong where the sparse views cannot tell.")
    if maps[outputs.UNCERTAINTY]:
        st.markdown("**Uncertainty**")
        _map_row(maps[outputs.UNCERTAINTY], False, shown.per_row, zoom)
        st.caption("Per-pixel standard deviation in HU across the networks of a seed ensemble: where the seeds "
                   "disagree, the data did not decide the image.")


def profile_section(shown: Shown, window: tuple[float, float]) -> None:
    """A horizontal or vertical line through every image, plotted in HU."""
    h, w = shown.truth.shape
    p1, p2 = st.columns([1, 3])
    axis = p1.radio("Direction", ["row", "column"], horizontal=True, key="profile_axis",
                    format_func=lambda a: "Horizontal" if a == "row" else "Vertical")
    last = (h if axis == "row" else w) - 1
    index = p2.slider("Row" if axis == "row" else "Column", 0, last, last // 2, key=f"profile_{axis}")
    p1.image(pf.tile(shown.truth, window, 256, profile=(axis, index)), caption="Profile line", width="stretch")
    lines = pf.profile(shown.images(), axis, index)
    p2.line_chart(pd.DataFrame(lines).rename_axis("pixel"), x_label="pixel", y_label="HU", height=320,
                  color=pf.profile_colours(list(lines)))


def loss_section(runs: Sequence[Outcome]) -> None:
    """Each iterative method's loss curve relative to its first iteration (log scale)."""
    curves = {pc.label(r.method): np.asarray(r.reconstruction.curve, dtype=np.float64) for r in runs
              if len(r.reconstruction.curve) > 1}
    if not curves:
        st.caption("No iterative method has been run (FBP is direct).")
        return
    import altair as alt  # only drawn here; streamlit depends on it

    long = pd.concat([pd.DataFrame({"iteration": np.arange(1, len(c) + 1), "relative loss": c / c[0],
                                    "method": name}) for name, c in curves.items() if c[0] > 0])
    chart = alt.Chart(long).mark_line().encode(
        x="iteration:Q", y=alt.Y("relative loss:Q", scale=alt.Scale(type="log")), color="method:N")
    st.altair_chart(chart, width="stretch")
    st.caption("Each curve relative to its first iteration: data residual (SIRT, CGLS), objective (TV), "
               "sinogram MSE (networks).")


def downloads_section(shown: Shown, window: tuple[float, float]) -> None:
    """Comparison sheet (PNG), all results (NPZ), metrics (CSV), derived DICOM series (ZIP), Send to PACS."""
    runs, views = shown.runs, shown.scan.views
    d1, d2, d4, d3 = st.columns(4)
    d1.download_button("Comparison (PNG)", png_bytes(pf.comparison_sheet(shown.images(), window)),
                       file_name="sparsect_comparison.png", mime="image/png", key="dl_png", icon=":material/image:",
                       width="stretch")
    d2.download_button("All results (NPZ)", pc.results_npz(shown.ct, shown.scan_data, runs, shown.scan),
                       file_name="sparsect_results.npz", mime="application/octet-stream", key="dl_npz",
                       icon=":material/data_array:", width="stretch")
    d4.download_button("Metrics (CSV)", pc.metrics_csv(runs),
                       file_name="sparsect_metrics.csv", mime="text/csv", key="dl_csv", icon=":material/table:",
                       width="stretch")
    keep_phi = d3.checkbox("Keep patient and study fields", value=False, key="dicom_keep_phi",
                           help="Off: the derived series are de-identified (DICOM PS3.15 basic profile).")
    d3.download_button("Derived DICOM series (ZIP)",
                       lambda: pc.dicom_zip(shown.ct, runs, views, anonymize=not keep_phi),
                       file_name="sparsect_dicom.zip", mime="application/zip", key="dl_dicom",
                       icon=":material/folder_zip:", width="stretch")
    if shown.from_pacs:
        page_pacs.send_widget(d3, st.session_state, shown.ct, runs, views, {r.method: pc.label(r.method) for r in runs})


def results_section(shown: Shown) -> None:
    """Comparison, metrics and the tabs below them."""
    window, zoom = comparison_section(shown)
    metrics_section(shown.runs, shown.truth, window)
    tabs = st.tabs(["Difference maps", "Line profile", "Loss curves", "Downloads"])
    with tabs[0]:
        difference_section(shown, window, zoom)
        trust_section(shown, zoom)
    with tabs[1]:
        profile_section(shown, window)
    with tabs[2]:
        loss_section(shown.runs)
    with tabs[3]:
        downloads_section(shown, window)


__all__ = ["TILE", "Shown", "comparison_section", "difference_section", "downloads_section", "image_grid",
           "loss_section", "metrics_section", "profile_section", "results_section", "trust_section",
           "window_controls"]
