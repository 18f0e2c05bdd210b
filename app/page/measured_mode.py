"""The page's "Measured scan" mode: a measured sinogram (.npy, .npz, HDF5 Data Exchange, HTC2022 .mat) or a
TIFF stack of projections (one image per view, with flat and dark fields), plus a geometry JSON where the
files lack it, reconstructed from N of its measured views.

There is no ground truth: scores are against a reference method run on all measured views (FBP by default
when views are dropped), and the data-consistency maps ``A x - y`` show how well each image explains the
measured sinogram. Uploads are read in memory (:func:`data.load_scan_bytes`, :func:`data.load_tiff_bytes`);
Run starts the same background job as the simulated run (app/page/jobs.py): the reference first, then each method,
with per-method progress and a Stop button.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparsect import data
from sparsect.app import measured_scan, run, settings
from sparsect.app.outputs import comparison_image, npz_bytes, png_bytes
from sparsect.app.page import figures as pf
from sparsect.app.page import keys, queue_view
from sparsect.app.page import progress as page_progress
from sparsect.app.page.jobs import Job
from sparsect.app.scans import Scan
from sparsect.reconstruct import registry

SUFFIXES = ["npy", "npz", "h5", "hdf5", "hdf", "dxf", "mat"]
TIFF_SUFFIXES = ["tif", "tiff"]
KINDS = ("Scan file", "TIFF stack")
REFERENCES = {f"{registry.label(m)} of all views": m for m in registry.REFERENCE_METHODS} | {
    "None (data consistency only)": None}
RESULTS = keys.MEASURED_RESULTS
HELP = ("Upload a measured scan (.npy, .npz, HDF5 Data Exchange or a Helsinki Tomography Challenge .mat), or a "
        "TIFF stack (one image per view, with flat*.tif and optionally dark*.tif fields), and, if they lack "
        "them, a geometry JSON file (beam, detector_pixel_mm, angles_deg, ...).")


@dataclass
class Upload:
    """The scan read from the upload, the name shown for it and the digest of every uploaded byte."""

    scan: data.MeasuredScan
    name: str
    digest: str


def _geometry(geometry_file: Any) -> dict[str, Any] | None:
    if geometry_file is None:
        return None
    try:
        return json.loads(geometry_file.getvalue().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise data.ScanError(f"{geometry_file.name} is not a JSON geometry file: {exc}") from None


def _digest(files: Sequence[tuple[str, bytes]], geometry_file: Any, row: int | None) -> str:
    sha = hashlib.sha256()
    for name, content in files:
        sha.update(hashlib.sha256(name.encode()).digest() + hashlib.sha256(content).digest())
    sha.update(geometry_file.getvalue() if geometry_file is not None else b"")
    return f"{sha.hexdigest()}:{row}"


def _read(state: Any, files: list[tuple[str, bytes]], geometry_file: Any, row: int | None,
          tiff: bool) -> Upload:
    """The uploaded scan, read once per upload (kept per session by digest)."""
    digest = _digest(files, geometry_file, row)
    scans = state[keys.MEASURED_SCANS]
    scan = scans.get(digest)
    if scan is None:
        geometry = _geometry(geometry_file)
        scan = data.load_tiff_bytes(files, geometry, row) if tiff else \
            data.load_scan_bytes(files[0][0], files[0][1], geometry)
        scans.put(digest, scan)
    name = f"{len(files)} TIFF files" if tiff else files[0][0]
    return Upload(scan, name, digest)


def _tiff_row(sb: Any, files: list[tuple[str, bytes]]) -> int:
    """The detector-row selector of a TIFF stack (image rows; default the middle one)."""
    rows = data.tiff_rows(*files[0])
    if rows == 1:
        return 0
    return sb.slider("Detector row", 0, rows - 1, rows // 2, key="measured_row",
                     help="The image row (one detector row) whose sinogram is reconstructed.")


def _upload_section(st: Any, state: Any) -> Upload | None:
    """Sidebar uploaders; the scan once it can be read (else None, with what to do or what is wrong)."""
    sb = st.sidebar
    kind = sb.radio("Measured data", KINDS, horizontal=True, key="measured_kind")
    tiff = kind == KINDS[1]
    if tiff:
        uploaded = sb.file_uploader("TIFF projections, flat and dark fields", type=TIFF_SUFFIXES,
                                    accept_multiple_files=True, key="measured_tiffs",
                                    help="One image per view (natural name order: p2 before p10); names starting "
                                         "with flat or white are flat fields, dark dark fields. Read in memory.")
        files = [(f.name, f.getvalue()) for f in uploaded or []]
    else:
        scan_file = sb.file_uploader("Measured scan", type=SUFFIXES, key="measured_scan",
                                     help="Line integrals or raw projections with flat/dark fields; read in memory.")
        files = [(scan_file.name, scan_file.getvalue())] if scan_file is not None else []
    geometry_file = sb.file_uploader("Geometry JSON (what the file lacks)", type=["json"], key="measured_geometry")
    st.title("Measured scan reconstruction")
    if not files:
        st.info(HELP)
        return None
    try:
        return _read(state, files, geometry_file, _tiff_row(sb, files) if tiff else None, tiff)
    except data.ScanError as exc:
        sb.error(str(exc))
        return None


@dataclass
class Options:
    scan: Scan
    methods: list[str]
    key: str  # names the upload and every choice: a result is shown only for the settings it was run with
    run_clicked: bool


def _options_section(st: Any, upload: Upload) -> Options | None:
    """Views, centre, reference, size and methods; the prepared scan (None, with the reason shown)."""
    sb, scan = st.sidebar, upload.scan
    views = sb.slider("Measured views used", 2, scan.n_views, min(60, scan.n_views), key="measured_views")
    auto_center = sb.toggle("Estimate the rotation centre", value=False, key="measured_center",
                            help="From opposing views; off: the file's centre offset.")
    reference = REFERENCES[sb.selectbox("Scores against", list(REFERENCES), key="measured_reference")]
    size = sb.select_slider("Image size", [64, 128, 256, 512], value=min(256, 64 * max(1, scan.det_count // 64)),
                            key="measured_size")
    methods = sb.multiselect("Methods", registry.METHODS, default=list(registry.MEASURED_PAGE_METHODS),
                             key="measured_methods", format_func=registry.label)
    run_clicked = sb.button("Run", type="primary", key="measured_run", disabled=not methods,
                            icon=":material/play_arrow:")
    try:
        prepared = measured_scan.prepare_scan(scan, views=views, center="auto" if auto_center else None, size=size,
                                              reference=reference)
    except data.ScanError as exc:
        st.error(str(exc))
        return None
    against = f"{registry.label(reference)} of all {prepared.dense.n_views} measured views" if reference else None
    st.caption(f"{upload.name}: {prepared.sparse.n_views} of {prepared.dense.n_views} measured views, "
               f"{scan.beam} beam, {prepared.image_size[0]} x {prepared.image_size[1]} pixels of "
               f"{prepared.pixel_size_mm:.3f} mm | " + (f"scores against {against}" if against else "no reference"))
    if prepared.center_warning:
        st.warning(prepared.center_warning.replace("--center auto", '"Estimate the rotation centre"'))
    key = f"{upload.digest}:{views}:{auto_center}:{reference}:{size}:{','.join(methods)}"
    return Options(measured_scan.measured_scan(prepared), methods, key, run_clicked)


def _collect(state: Any, key: str, job: Job) -> None:
    if not job.collected:
        state[RESULTS] = (key, job.reference, job.finished_outcomes())
        job.collected = True


def _run_section(st: Any, state: Any, options: Options) -> None:
    """Start a run on Run; follow a running one (then rerun); collect and report a finished one."""
    running = state.get(keys.MEASURED_JOB)
    if options.run_clicked and (running is None or not running[1].running):
        chosen = settings.method_settings(device="auto")
        side, scanned = queue_view.measured_settings(options.scan)
        job = queue_view.start(st, [run.Task(m, chosen, m) for m in options.methods], options.scan, side, scanned)
        if job is not None:
            running = state[keys.MEASURED_JOB] = (options.key, job)
    if running is None:
        return
    key, job = running
    box = st.container()
    if job.running:
        reference = job.scan.reference_method
        names = {run.REFERENCE: f"Reference: {registry.label(reference)}, all views"} if reference else None
        page_progress.follow(st, box, job, names, stop_key="measured_stop")
        _collect(state, key, job)
        st.rerun()
    _collect(state, key, job)
    if key == options.key:
        page_progress.show_errors(box, job)


def render(st: Any, state: Any) -> None:
    """Sidebar and main area of the measured-scan mode."""
    upload = _upload_section(st, state)
    if upload is None:
        return
    options = _options_section(st, upload)
    if options is None:
        return
    _run_section(st, state, options)
    stored = state.get(RESULTS)
    if stored is None or stored[0] != options.key:
        st.info("Press **Run** to reconstruct.")
        return
    _, reference_image, outcomes = stored
    if outcomes:
        _show(st, options.scan, reference_image, outcomes)


def _show(st: Any, scan: Scan, reference_image: Any, outcomes: list[run.Outcome]) -> None:
    window = pf.window_from("soft_tissue")
    prepared = scan.measured
    images = {registry.label(o.method): o.image_hu for o in outcomes}
    if reference_image is not None:
        images = {f"Reference: {registry.label(scan.reference_method)}, all views": reference_image.image_hu} | images
    cols = st.columns(min(4, len(images)))
    for i, (caption, image) in enumerate(images.items()):
        cols[i % len(cols)].image(pf.tile(image, window, 320), caption=caption, width="stretch")
    records = [o.record() for o in outcomes]
    table = pd.DataFrame(records).set_index("fit")[["views", "psnr", "ssim", "rmse_hu", "data_rmse", "seconds"]]
    st.dataframe(table.rename(columns={"psnr": "PSNR (dB)", "ssim": "SSIM", "rmse_hu": "RMSE (HU)",
                                       "data_rmse": "data RMSE"}).rename_axis("Method"), width="stretch")
    against = records[0]["scored_against"]
    st.caption(f"Scores against {against}." if against else
               "No reference: scores are omitted; the maps below show how well each image explains the data.")
    scale = max(float(np.abs(o.sinogram_residual).max()) for o in outcomes) or 1.0
    st.image(png_bytes(comparison_image({f"{o.method} A x - y": o.sinogram_residual for o in outcomes},
                                        (-scale, scale))),
             caption=f"Data consistency over all {prepared.dense.n_views} measured views (views down, bins across; "
                     f"grey 0, range +/-{scale:.3g})", width="stretch")
    arrays = {"sinogram": prepared.dense.sinogram, "angles_rad": prepared.dense.angles,
              **{f"{o.method}_hu": o.image_hu for o in outcomes},
              **{f"{o.method}_residual": o.sinogram_residual for o in outcomes}}
    st.download_button("Results (NPZ)", npz_bytes(arrays), file_name="sparsect_measured.npz",
                       mime="application/octet-stream", key="measured_npz", icon=":material/data_array:")


__all__ = ["render"]
