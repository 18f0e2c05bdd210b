"""The page's "Upload a measured scan" mode: a measured sinogram (.npy, .npz, HDF5 Data Exchange, HTC2022
.mat) with an optional geometry JSON, reconstructed from N of its measured views.

There is no ground truth: scores are against a reference method run on all measured views (FBP by default
when views are dropped), and the data-consistency maps ``A x - y`` show how well each image explains the
measured sinogram. The upload is read in memory (:func:`data.load_scan_bytes`); methods run when Run is
pressed, one after the other, in the page's own run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from sparsect import data
from sparsect.app import measured, settings
from sparsect.app.outputs import comparison_image, npz_bytes, png_bytes
from sparsect.app.page import figures as pf
from sparsect.reconstruct import registry

SUFFIXES = ["npy", "npz", "h5", "hdf5", "hdf", "dxf", "mat"]
REFERENCES = {"FBP of all views": "fbp", "TV of all views": "tv", "None (data consistency only)": None}
RESULTS = "measured_results"


def _load(scan_file: Any, geometry_file: Any) -> data.MeasuredScan:
    geometry = None
    if geometry_file is not None:
        try:
            geometry = json.loads(geometry_file.getvalue().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise data.ScanError(f"{geometry_file.name} is not a JSON geometry file: {exc}") from None
    return data.load_scan_bytes(scan_file.name, scan_file.getvalue(), geometry)


def render(st: Any, state: Any) -> None:
    """Sidebar and main area of the measured-scan mode (the caller stops the script afterwards)."""
    sb = st.sidebar
    scan_file = sb.file_uploader("Measured scan", type=SUFFIXES, key="measured_scan",
                                 help="Line integrals or raw projections with flat/dark fields; read in memory.")
    geometry_file = sb.file_uploader("Geometry JSON (what the file lacks)", type=["json"], key="measured_geometry")
    st.title("Measured scan reconstruction")
    if scan_file is None:
        st.info("Upload a measured scan (.npy, .npz, HDF5 Data Exchange or a Helsinki Tomography Challenge .mat) "
                "and, if it lacks them, a geometry JSON file (beam, detector_pixel_mm, angles_deg, ...).")
        return
    try:
        scan = _load(scan_file, geometry_file)
    except data.ScanError as exc:
        sb.error(str(exc))
        return
    views = sb.slider("Measured views used", 2, scan.n_views, min(60, scan.n_views), key="measured_views")
    auto_center = sb.toggle("Estimate the rotation centre", value=False, key="measured_center",
                            help="From opposing views; off: the file's centre offset.")
    reference = REFERENCES[sb.selectbox("Scores against", list(REFERENCES), key="measured_reference")]
    size = sb.select_slider("Image size", [64, 128, 256, 512], value=min(256, 64 * max(1, scan.det_count // 64)),
                            key="measured_size")
    methods = sb.multiselect("Methods", registry.METHODS, default=["fbp", "sirt"], key="measured_methods")
    run = sb.button("Run", type="primary", key="measured_run", disabled=not methods, icon=":material/play_arrow:")
    try:
        prepared = measured.prepare_scan(scan, views=views, center="auto" if auto_center else None, size=size,
                                         reference=reference)
    except data.ScanError as exc:
        st.error(str(exc))
        return
    label = measured.score_label(prepared)
    st.caption(f"{scan_file.name}: {prepared.sparse.n_views} of {prepared.dense.n_views} measured views, "
               f"{scan.beam} beam, {prepared.image_size[0]} x {prepared.image_size[1]} pixels of "
               f"{prepared.pixel_size_mm:.3f} mm | " + (f"scores {label}" if label else "no reference"))
    key = hashlib.sha256(scan_file.getvalue() + (geometry_file.getvalue() if geometry_file else b"")).hexdigest()
    key += f":{views}:{auto_center}:{reference}:{size}:{','.join(methods)}"
    if run:
        with st.spinner("Reconstructing ..."):
            state[RESULTS] = (key, *measured.run_methods(prepared, tuple(methods),
                                                          settings.method_settings(device="auto")))
    stored = state.get(RESULTS)
    if stored is None or stored[0] != key:
        st.info("Press **Run** to reconstruct.")
        return
    _, reference_image, outcomes = stored
    _show(st, prepared, reference_image, outcomes)


def _show(st: Any, prepared: measured.MeasuredInput, reference_image: Any,
          outcomes: list[measured.MeasuredOutcome]) -> None:
    window = pf.window_from("soft_tissue")
    images = {o.method.upper(): o.reconstruction.image_hu for o in outcomes}
    if reference_image is not None:
        images = {f"Reference: {prepared.reference.upper()}, all views": reference_image.image_hu} | images
    cols = st.columns(min(4, len(images)))
    for i, (caption, image) in enumerate(images.items()):
        cols[i % len(cols)].image(pf.tile(image, window, 320), caption=caption, width="stretch")
    records = [o.record(prepared) for o in outcomes]
    table = pd.DataFrame(records).set_index("method")[["views", "psnr", "ssim", "rmse_hu", "data_rmse", "seconds"]]
    st.dataframe(table.rename(columns={"psnr": "PSNR (dB)", "ssim": "SSIM", "rmse_hu": "RMSE (HU)",
                                       "data_rmse": "data RMSE"}), width="stretch")
    st.caption(f"Scores {measured.score_label(prepared)}." if prepared.reference else
               "No reference: scores are omitted; the maps below show how well each image explains the data.")
    scale = max(float(np.abs(o.residual).max()) for o in outcomes) or 1.0
    st.image(png_bytes(comparison_image({f"{o.method} A x - y": o.residual for o in outcomes}, (-scale, scale))),
             caption=f"Data consistency over all {prepared.dense.n_views} measured views (views down, bins across; "
                     f"grey 0, range +/-{scale:.3g})", width="stretch")
    arrays = {"sinogram": prepared.dense.sinogram, "angles_rad": prepared.dense.angles,
              **{f"{o.method}_hu": o.reconstruction.image_hu for o in outcomes},
              **{f"{o.method}_residual": o.residual for o in outcomes}}
    st.download_button("Results (NPZ)", npz_bytes(arrays), file_name="sparsect_measured.npz",
                       mime="application/octet-stream", key="measured_npz", icon=":material/data_array:")


__all__ = ["render"]
