"""What ``sparsect reconstruct --out DIR`` writes for a run, simulated or measured alike.

``comparison.png`` (the reference first, when there is one), ``<method>.png``, ``consistency.png`` (each image's
data-consistency map, HU), ``uncertainty.png`` (seed ensembles), ``residual_sinograms.png`` (``A x - y`` over the
check data), ``results.npz``, ``metrics.json`` and one derived DICOM series per method in ``dicom/<method>/`` (and
``dicom/reference/`` for a measured scan's reference). Everything is staged, then swapped in as the run's folder
whole (:class:`sparsect.app.outputs.Staging`): ``--out`` never mixes two runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sparsect import data
from sparsect.app import outputs
from sparsect.app.display import Window
from sparsect.app.records import fit_words
from sparsect.app.run import Outcome, RunResult
from sparsect.app.scans import Scan
from sparsect.data.dicom_write import Provenance, synthetic_source
from sparsect.reconstruct import registry

#: The derived series' SeriesNumbers: a measured scan's reference, then the methods' in order.
REFERENCE_SERIES, FIRST_METHOD_SERIES = 1000, 1001
REFERENCE = "reference"


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


def captions(records: list[dict[str, Any]], window: Window) -> dict[str, str]:
    """Each method's picture caption: its scores (when scored) and the display window."""
    lines = {}
    for r in records:
        scores = f"PSNR {r['psnr']:.1f} dB SSIM {r['ssim']:.3f}\n" if r["psnr"] is not None else ""
        lines[r["method"]] = f"{scores}{window.label} window"
    return lines


def _write_pictures(folder: Path, scan: Scan, result: RunResult, done: list[Outcome],
                    records: list[dict[str, Any]], window: Window) -> None:
    """``comparison.png`` and one PNG per method in ``window``, each labelled with the method's fit in words, its
    scores and the window."""
    reference = reference_image(scan, result)
    words = {r["method"]: r["fit"].replace(", ", "\n", 1) for r in records}
    lines = {words[m]: text for m, text in captions(records, window).items()}
    images = ({reference[0]: reference[1]} if reference else {}) | {words[o.method]: o.image_hu for o in done}
    outputs.write_png(folder / "comparison.png", outputs.comparison_image(images, window.bounds, captions=lines))
    for o in done:
        outputs.write_png(folder / f"{o.method}.png", outputs.comparison_image(
            {words[o.method]: o.image_hu}, window.bounds, captions=lines))


def write(staging: outputs.Staging, scan: Scan, ct: data.CTSlice | None, result: RunResult,
          records: list[dict[str, Any]], window: Any, anonymize: bool = False, same_study: bool = False) -> list[Path]:
    """Write every output of ``result`` into the staging folder, then swap it in as ``--out``; returns the files.

    ``ct`` is the slice a simulated scan was made from (its DICOM header goes into the derived series, with a
    pseudonymous identity when ``anonymize``); a measured scan's series join one synthetic study without patient.
    The series go into a research study of their own unless ``same_study`` (then into the slice's study)."""
    folder = staging.folder
    done = [o for o in result.outcomes if o.ok]
    _write_pictures(folder, scan, result, done, records, window)
    outputs.write_trust_pngs(folder, outputs.trust_maps(done))
    scale = max(float(np.abs(o.sinogram_residual).max()) for o in done) or 1.0
    outputs.write_png(folder / "residual_sinograms.png", outputs.comparison_image(
        {f"{o.method} A x - y": o.sinogram_residual for o in done}, (-scale, scale)))
    outputs.write_npz(folder / "results.npz", _arrays(scan, ct, result, done))
    if scan.measured is not None:
        outputs.write_json(folder / "metrics.json", {"scan": scan.measured.dense.provenance(), "records": records})
    else:
        outputs.write_json(folder / "metrics.json", records)
    _write_dicom(folder / "dicom", scan, ct, result, done, anonymize, same_study)
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
                 anonymize: bool, same_study: bool = False) -> None:
    """One derived series per method (SeriesNumbers 1001, 1002, ...; de-identified, one pseudonymous identity),
    each marked as a research reconstruction from a simulated or measured scan (:class:`Provenance`)."""
    anonymizer = data.Anonymizer() if anonymize else False
    total = None
    if scan.measured is not None:
        source = _measured_source(scan)
        total = scan.check_sinogram.shape[-2]
        if result.reference is not None:
            method = scan.reference_method
            data.write_series(folder / REFERENCE, result.reference.image_hu, source,
                              Provenance(f"{registry.label(method)} reference", total, total,
                                         iterative=registry.method(method).iterative),
                              series_number=REFERENCE_SERIES, same_study=same_study)
    else:
        source = ct
    for number, o in enumerate(done, start=FIRST_METHOD_SERIES):
        provenance = Provenance(registry.label(o.method), scan.views, total,
                                fit=fit_words(o.method, o.reconstruction),
                                iterative=registry.method(o.method).iterative)
        data.write_series(folder / o.method, o.image_hu, source, provenance, anonymize=anonymizer,
                          series_number=number, same_study=same_study)


__all__ = ["FIRST_METHOD_SERIES", "REFERENCE_SERIES", "reference_image", "write"]
