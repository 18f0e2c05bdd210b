"""The one record of a method's result, from which every output is made: the terminal table, ``--json``,
``metrics.json``, the batch job's ``metrics.csv``/``metrics.jsonl`` rows, the page's table and its CSV.

A record is a flat, strict-JSON dict with the keys of :data:`RECORD_FIELDS`, always all of them (None where a
field does not apply), made by :func:`record` from an :class:`sparsect.app.run.Outcome`.
"""

from __future__ import annotations

import math
from typing import Any

from sparsect import __version__
from sparsect.reconstruct import registry
from sparsect.reconstruct.result import Reconstruction

#: The scores a record carries (see :func:`sparsect.reconstruct.metrics.compare`) and their rounding.
SCORE_DIGITS = {"psnr": 4, "ssim": 5, "rmse_hu": 3, "psnr_range": 4, "ssim_range": 5, "rmse_soft_hu": 3}
#: Where the scan came from (:attr:`sparsect.app.scans.Scan.provenance`): the input as the user named it (a file,
#: folder or sample; None when de-identified), the series (its SeriesInstanceUID, a pseudonym when de-identified),
#: the slice index in it, and the display window the pictures use.
SOURCE_FIELDS = ("input", "series", "slice", "window")
#: How the scan was made (:attr:`sparsect.app.scans.Scan.provenance`): beam kind, arc in degrees, detector bins,
#: working grid side, photons per ray (None: noise-free or unknown), the noise seed, the simulation's label, grid
#: and rays per bin (None for a measured scan), the measured views there were (None for a simulated scan).
SCAN_FIELDS = ("beam", "arc_deg", "det_count", "size", "photons", "noise_seed", "simulation", "simulation_grid",
               "sub_rays", "measured_views")
#: Every key of a record, in the order tables and CSV files show them.
RECORD_FIELDS = ("method", "fit", "variant", "views", *SCORE_DIGITS, "scored_against", "data_rmse", "seconds",
                 "iterations", "warm_start_iterations", "parameters", "device", "stop_reason", "note", "fit_note",
                 *SOURCE_FIELDS, *SCAN_FIELDS, "version")


def rounded_scores(scores: dict[str, float]) -> dict[str, float | None]:
    """The :data:`SCORE_DIGITS` scores, rounded; None where not a finite number or not scored."""
    return {key: round(float(scores[key]), digits) if key in scores and math.isfinite(scores[key]) else None
            for key, digits in SCORE_DIGITS.items()}


def fit_notes(reconstruction: Reconstruction, index: int = 0) -> list[str]:
    """What a reader must know about how the network fit behind image ``index`` (along the batch) of
    ``reconstruction`` went: it diverged (the image is its last good state), or ensemble members were left out
    because theirs did. Empty for a fit that went well and for the classical methods."""
    notes = []
    if index in reconstruction.diverged:
        notes.append("diverged: the image is the fit's last good state before it blew up, not a converged fit")
    seeds = [str(left["seed"]) for left in reconstruction.settings.get("ensemble_left_out", ())
             if left["slice"] == index]
    if seeds:
        notes.append(f"ensemble member(s) of seed {', '.join(seeds)} diverged: left out of the mean and the "
                     "uncertainty map")
    return notes


def score_note(scores: dict[str, float], rounded: dict[str, float | None]) -> str | None:
    """Why scores of a scored image are null: a PSNR is infinite when the image equals the reference;
    rmse_soft_hu has no value when the reference has no soft tissue."""
    if not scores:
        return None
    notes = []
    missing = [key for key in SCORE_DIGITS if key != "rmse_soft_hu" and rounded[key] is None]
    if missing:
        why = "the image equals the reference" if scores.get("psnr") == math.inf else "not a finite number"
        notes.append(f"{', '.join(missing)} null: {why}")
    if rounded["rmse_soft_hu"] is None:
        notes.append("rmse_soft_hu null: no reference pixel in [-200, 200] HU")
    return "; ".join(notes) or None


def variant_of(method: str, reconstruction: Reconstruction) -> list[str] | None:
    """The fit variants a network was fitted with as its result records them (e.g. ["fbp_init", "ramp_loss"] or
    ["paper"]); None for the classical methods."""
    if not registry.method(method).is_network:
        return None
    variant = reconstruction.settings.get("variant")
    return list(variant) if variant is not None else None


def fit_words(method: str, reconstruction: Reconstruction) -> str:
    """The method's fit in words (:func:`sparsect.reconstruct.registry.fit_description`)."""
    spec = registry.method(method)
    if not spec.is_network:
        return spec.label
    size = int(reconstruction.settings.get("ensemble_size", 1))
    return registry.fit_description(method, variant_of(method, reconstruction), size)


def record(outcome: Any) -> dict[str, Any]:
    """The strict-JSON record of an :class:`sparsect.app.run.Outcome`: every key of :data:`RECORD_FIELDS`.

    method, fit (the fit in words), variant (network fit variants, None for classical methods), views; the scores
    (:data:`SCORE_DIGITS`, null when unscored or not finite: ``note`` says why) against ``scored_against``;
    data_rmse (RMS of ``A x - y`` over the scan's check data, line-integral units); seconds, iterations,
    warm_start_iterations, parameters (trainable parameters, 0 for classical methods), device; stop_reason
    ("completed", "stopped" by a stop request, "early_stop", or "diverged": a network fit that ran out of divergence
    roll-backs); fit_note (:func:`fit_notes`, or None); where the scan came from (:data:`SOURCE_FIELDS`) and how
    it was made (:data:`SCAN_FIELDS`); and the sparsect version.
    """
    r = outcome.reconstruction
    scores = rounded_scores(outcome.scores)
    notes = fit_notes(r, outcome.index)
    row = {"method": outcome.method, "fit": fit_words(outcome.method, r), "variant": variant_of(outcome.method, r),
           "views": outcome.views, **scores, "scored_against": outcome.scored_against,
           "data_rmse": round(outcome.data_rmse, 6), "seconds": round(float(outcome.seconds), 3),
           "iterations": int(r.iterations), "warm_start_iterations": int(r.warm_start_iterations),
           "parameters": int(r.n_parameters), "device": str(r.device), "stop_reason": r.stop_reason,
           "note": score_note(outcome.scores, scores), "fit_note": "; ".join(notes) or None,
           **{key: outcome.provenance.get(key) for key in (*SOURCE_FIELDS, *SCAN_FIELDS)}, "version": __version__}
    return {key: row[key] for key in RECORD_FIELDS}


def csv_cell(value: Any) -> Any:
    """A record's value as a CSV cell: a list of names (the variants) joined with "+", of numbers (a grid) with
    "x"."""
    if isinstance(value, list | tuple):
        return "+".join(map(str, value)) if all(isinstance(v, str) for v in value) else "x".join(map(str, value))
    return value


__all__ = ["RECORD_FIELDS", "SCAN_FIELDS", "SCORE_DIGITS", "SOURCE_FIELDS", "csv_cell", "fit_notes", "fit_words",
           "record", "rounded_scores", "score_note", "variant_of"]
