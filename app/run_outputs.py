"""What ``sparsect reconstruct --out DIR`` writes for a run, simulated or measured alike.

``comparison.png`` (the reference first, when there is one), ``<method>.png``, ``consistency.png`` (each image's
data-consistency map, HU), ``uncertainty.png`` (seed ensembles), ``residual_sinograms.png`` (``A x - y`` over the
check data), ``results.npz``, ``metrics.json`` and one derived DICOM series per method in ``dicom/<method>/`` (and
``dicom/reference/`` for a measured scan's reference). Everything is staged, then moved into place
(:class:`sparsect.app.outputs.Staging`), and a planned output this run did not produce is removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sparsect import data
from sparsect.app import outputs
from sparsect.app.run import Outcome, RunResult
from sparsect.app.scans import Scan
from sparsect.data.dicom_write import synthetic_source
from sparsect.reconstruct import registry

#: The derived series' SeriesNumbers: a measured scan's reference, then the methods' in order.
REFERENCE_SERIES, FIRST_METHOD_SERIES = 1000, 1001
REFERENCE = "reference"


def planned(methods: tuple[str, ...]) -> dict[str, str]:
    """What ``--out`` may receive: relative path -> "file" or "folder" (a run writes those that apply)."""
    fixed = ("comparison.png", "residual_sinograms.png", "results.npz", "metrics.json",
             f"{outputs.CONSISTENCY}.png", f"{outputs.UNCERTAINTY}.png")
    return {**dict.fromkeys(fixed, "file"), "dicom": "folder", f"dicom/{REFERENCE}": "folder",
            **{f"{name}.png": "file" for name in methods}, **{f"dicom/{name}": "folder" for name in methods}}


def reference_image(scan: Scan, result: RunResult) -> tuple[str, np.ndarray] | None:
    """(its label, the HU image) of what the scores compare against; None for an unscored scan."""
    if scan.reference_hu is not None:
        return REFERENCE, scan.reference_hu
    if result.reference is not None:
        return f"{scan.reference_method} (all views)", result.reference.image_hu
    return None


def _arrays(scan: Scan, ct: data.CTSlice | None, result: RunResult, done: list[Outcome]) -> dict[str, Any]:
    geometry = scan.check_geometry
    arrays: dict[str, Any] = {
        "sinogram": scan.check_sinogram.detach().cpu().numpy(), "angles_rad": geometry.angles.detach().cpu().numpy(),
        "pixel_spacing_mm": (scan.pixel_size_mm,) * 2, **{f"{o.method}_hu": o.image_hu for o in done},
        **{f"{o.method}_residual": o.sinogram_residual for o in done},
        **outputs.trust_arrays(outputs.trust_maps(done))}
    if scan.measured is not None:
        arrays["views_used"] = scan.geometry.angles.detach().cpu().numpy()
    reference = reference_image(scan, result)
    if reference is not None:
        arrays["reference_hu"] = reference[1]
    if scan.simulation is not None and ct is not None:
        simulation = scan.simulation
        arrays |= {"slice_hu": ct.hu, "slice_spacing_mm": ct.spacing, "simulation": simulation.label,
                   "simulation_grid": simulation.simulation_grid, "sub_rays": simulation.sub_rays}
    return arrays


def write(staging: outputs.Staging, scan: Scan, ct: data.CTSlice | None, result: RunResult,
          records: list[dict[str, Any]], window: Any, anonymize: bool = False) -> list[Path]:
    """Write every output of ``result`` into the staging folder, then move them into ``--out``; returns the files.

    ``ct`` is the slice a simulated scan was made from (its DICOM header goes into the derived series, with a
    pseudonymous identity when ``anonymize``); a measured scan's series join one synthetic study without patient."""
    folder = staging.folder
    done = [o for o in result.outcomes if o.ok]
    reference = reference_image(scan, result)
    images = ({reference[0]: reference[1]} if reference else {}) | {o.method: o.image_hu for o in done}
    outputs.write_png(folder / "comparison.png", outputs.comparison_image(images, window))
    for o in done:
        outputs.write_png(folder / f"{o.method}.png", outputs.comparison_image({o.method: o.image_hu}, window))
    outputs.write_trust_pngs(folder, outputs.trust_maps(done))
    scale = max(float(np.abs(o.sinogram_residual).max()) for o in done) or 1.0
    outputs.write_png(folder / "residual_sinograms.png", outputs.comparison_image(
        {f"{o.method} A x - y": o.sinogram_residual for o in done}, (-scale, scale)))
    outputs.write_npz(folder / "results.npz", _arrays(scan, ct, result, done))
    if scan.measured is not None:
        outputs.write_json(folder / "metrics.json", {"scan": scan.measured.dense.provenance(), "records": records})
    else:
        outputs.write_json(folder / "metrics.json", records)
    _write_dicom(folder / "dicom", scan, ct, result, done, anonymize)
    return staging.commit()


def _measured_source(scan: Scan) -> data.CTSlice:
    """A header-only slice for a measured scan's series: a synthetic study whose UIDs derive from the measured
    sinogram and the grid, so every series of one scan joins it."""
    prepared = scan.measured
    dense = prepared.dense
    content = (np.ascontiguousarray(dense.sinogram, dtype=np.float32).tobytes()
               + repr((dense.n_views, dense.det_count, prepared.image_size, prepared.pixel_size_mm)).encode())
    header = synthetic_source(content, "MEASURED", f"Measured {dense.beam}-beam scan, {dense.n_views} views")
    return data.CTSlice(hu=np.zeros(prepared.image_size, np.float32),
                        spacing=(prepared.pixel_size_mm, prepared.pixel_size_mm), dataset=header)


def _write_dicom(folder: Path, scan: Scan, ct: data.CTSlice | None, result: RunResult, done: list[Outcome],
                 anonymize: bool) -> None:
    """One derived series per method (SeriesNumbers 1001, 1002, ...; de-identified, one pseudonymous identity)."""
    anonymizer = data.Anonymizer() if anonymize else False
    if scan.measured is not None:
        source = _measured_source(scan)
        total = scan.check_sinogram.shape[-2]
        views = f"{scan.views} of {total} measured views"
        if result.reference is not None:
            data.write_series(folder / REFERENCE, result.reference.image_hu, source,
                              f"{registry.label(scan.reference_method)} reference {total} of {total} measured views",
                              series_number=REFERENCE_SERIES)
    else:
        source, views = ct, f"{scan.views} views"
    for number, o in enumerate(done, start=FIRST_METHOD_SERIES):
        data.write_series(folder / o.method, o.image_hu, source, f"{registry.label(o.method)} {views}",
                          anonymize=anonymizer, series_number=number)


__all__ = ["FIRST_METHOD_SERIES", "REFERENCE_SERIES", "planned", "reference_image", "write"]
