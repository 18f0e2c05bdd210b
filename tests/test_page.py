"""The Streamlit page driven by streamlit's AppTest, plus its pure helpers (uploads, figures, reader CSV,
downloads, background runs) and the server settings.
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from sparsect import data
from sparsect.app import records, run, scans, serve, settings
from sparsect.app.page import compute as pc
from sparsect.app.page import figures as pf
from sparsect.app.page import reader as pr
from sparsect.app.page import uploads
from sparsect.app.page.jobs import Job
from sparsect.reconstruct import classical, metrics, neural, registry
from sparsect.reconstruct.neural import ENSEMBLE_SIZE

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: streamlit's toml dependency reads it too
    import toml as tomllib

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "app" / "page" / "main.py")
TIMEOUT = 90


def _ct_small_bytes() -> bytes:
    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom test data is not installed")
    return Path(path).read_bytes()


def _app():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def _metrics(at):
    tables = [d.value for d in at.dataframe if "PSNR (dB)" in getattr(d.value, "columns", [])]
    assert tables, "no metrics table on the page"
    return tables[-1]


def _network_row(table, label: str) -> str:
    """The metrics table's row of a network: its label and its fit in words ("LRNN, 3 seeds, ...")."""
    (row,) = [name for name in table.index if name.split(",")[0] == label]
    return row


def _texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def _tick(at, *methods: str):
    """Tick exactly ``methods`` in the sidebar (the page ticks :data:`registry.PAGE_METHODS` at first)."""
    for method in registry.METHODS:
        box = at.sidebar.checkbox(key=f"use_{method}")
        box.check() if method in methods else box.uncheck()
    return at


# ------------------------------------------------------------------------------------------ pure helpers


def test_read_uploads_corrupt_and_non_dicom_files_give_clear_messages():
    summary = uploads.read_uploads([("broken.dcm", b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")])
    assert summary.error and "broken.dcm" in summary.error and not summary.series
    summary = uploads.read_uploads([("notes.txt", b"hello, not an image")])
    assert summary.error and "notes.txt" in summary.error
    assert "Traceback" not in summary.error
    assert uploads.read_uploads([]).error


def test_read_uploads_series_and_zip_in_memory():
    raw = _ct_small_bytes()
    summary = uploads.read_uploads([("ct.dcm", raw), ("readme.txt", b"not dicom")])
    assert summary.error is None and len(summary.series) == 1
    assert [Path(n).name for n, _ in summary.skipped] == ["readme.txt"]
    assert "128x128" in uploads.series_label(summary.series[0])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("series/IM0001", raw)
    zipped = uploads.read_uploads([("series.zip", buffer.getvalue())])
    assert zipped.error is None and zipped.series[0].shape == (1, 128, 128)
    assert zipped.digest != summary.digest
    ct = scans.prepare_slice(zipped.series[0].slice(0), 64)
    assert ct.hu.shape == (128, 128)  # square: kept whole for the scan; ScanSettings.size is the working grid
    assert "PatientName" in uploads.identifying_fields(ct)
    assert not any("Patient" in k for k in uploads.describe(ct))


def test_figures_window_zoom_difference_and_profile():
    assert pf.window_from("brain") == (0.0, 80.0)
    assert pf.window_from("custom", 40, 400) == (-160.0, 240.0)
    zoom = pf.Zoom(cx=2, cy=120, factor=4)
    left, top, right, bottom = zoom.box((128, 128))
    assert (left, right - left, bottom) == (0, 32, 128)
    image = np.linspace(-1000, 1000, 128 * 128, dtype=np.float32).reshape(128, 128)
    assert pf.tile(image, (-160, 240), 200, zoom=zoom).size == (200, 200)
    assert pf.tile(image, (-160, 240), 200, outline=zoom, profile=("row", 5)).size == (200, 200)
    limit = pf.difference_limit([image - image.T])
    inside = (image - image.T)[pf.metrics.circle_mask(image.shape)]
    assert np.percentile(np.abs(inside), 99) <= limit <= 2.5 * np.percentile(np.abs(inside), 99)
    rgb = pf.diverging(np.array([-1.0, 0.0, 1.0]))
    assert rgb[1].min() > 240 and rgb[0, 2] > rgb[0, 0] and rgb[2, 0] > rgb[2, 2]  # blue, white, red
    assert pf.colorbar(limit, 400).size == (400, 54)
    prof = pf.profile({"a": image}, "column", 3)
    assert prof["a"].shape == (128,) and prof["a"][0] == image[0, 3]


def test_profile_colours_are_distinct_for_every_method():
    names = ["Ground truth", *(m.label for m in registry.METHODS.values())]
    colours = pf.profile_colours(names)
    assert len(colours) == len(names) == 9 and len(set(colours)) == 9 and colours[0] == "#000000"
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=float)
    gaps = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e9
    assert gaps.min() > 60  # no two lines alike (8-bit RGB distance)


def test_difference_maps_are_masked_alike_with_a_range_from_the_window():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 50, (64, 64))
    tiles = [np.asarray(pf.difference_tile(reference + rng.normal(0, s, reference.shape), reference, 100.0, 64))
             for s in (5.0, 300.0)]
    outside = ~pf.metrics.circle_mask((64, 64))
    for picture in tiles:
        assert (picture[outside] == pf.UNSCORED_COLOUR).all()  # same grey outside the circle for every method
    assert not (tiles[0][~outside] == tiles[1][~outside]).all()
    assert pf.difference_default(pf.window_from("brain")) == 20  # a quarter of 80 HU
    assert pf.difference_default(pf.window_from("soft_tissue")) == 100  # a quarter of 400 HU
    assert pf.difference_default(pf.window_from("full")) == 1000  # a quarter of 4095 HU, rounded


def test_reader_labels_and_csv():
    labels = pr.blind_labels(["lrnn", "fbp", "tv"], seed=1)
    assert sorted(labels) == ["A", "B", "C"] and sorted(labels.values()) == ["fbp", "lrnn", "tv"]
    assert pr.blind_labels(["tv", "fbp", "lrnn"], seed=1) == labels
    ratings = {lab: {"quality": 4, "artifacts": 3, "rank": i + 1, "comment": "ok"} for i, lab in enumerate(labels)}
    blind = list(csv.DictReader(io.StringIO(pr.ratings_csv("s1", "AB", labels, ratings, False).decode())))
    assert [r["label"] for r in blind] == ["A", "B", "C"] and all(r["method"] == "" for r in blind)
    open_ = list(csv.DictReader(io.StringIO(pr.ratings_csv("s1", "AB", labels, ratings, True).decode())))
    assert [r["method"] for r in open_] == [labels[k] for k in "ABC"]
    assert pr.ranks_valid({"A": 2, "B": 1}) and not pr.ranks_valid({"A": 1, "B": 1})
    assert not pr.ranks_valid({"A": 1, "B": None})
    shown = list(csv.DictReader(io.StringIO(pr.ratings_csv("s1", "AB", labels, {"A": {"rank": None}}, False,
                                                             ["C", "A", "B"]).decode())))
    assert [(r["label"], r["position"], r["rank"]) for r in shown] == [("A", "2", ""), ("B", "3", ""), ("C", "1", "")]


def test_reading_order_is_shuffled_per_reader():
    labels = list("ABCDEF")
    orders = {reader: tuple(pr.reading_order(labels, "000123", reader)) for reader in ("ab", "cd", "ef", "gh")}
    assert all(sorted(o) == labels for o in orders.values())
    assert len(set(orders.values())) > 1  # 720 orders: four readers all alike has chance 1/720^3
    assert pr.reading_order(labels, "000123", " AB ") == list(orders["ab"])  # stable for one reader
    assert pr.widget_key("r", "000123", "ab", "A") != pr.widget_key("r", "000123", "cd", "A")


def _outcome(method: str, scan, iterations: int | None = None):
    (outcome,) = run.reconstruct(method, [scan], settings.MethodSettings(iterations=iterations, device="cpu"))
    return outcome


def test_metrics_csv_matches_the_table():
    ct, scan = _small_problem()
    outcome = _outcome("fbp", scan)
    rows = list(csv.DictReader(io.StringIO(pc.metrics_csv([outcome]).decode())))
    assert list(rows[0]) == list(records.RECORD_FIELDS) and len(rows) == 1
    assert rows[0]["method"] == "fbp" and rows[0]["views"] == "12" and rows[0]["stop_reason"] == "completed"
    assert float(rows[0]["psnr"]) == round(outcome.scores["psnr"], 4)
    assert float(rows[0]["rmse_hu"]) == round(outcome.scores["rmse_hu"], 3)
    assert (rows[0]["simulation"], rows[0]["simulation_grid"], rows[0]["sub_rays"]) == ("honest", "64x64", "4")
    diverged = dataclasses.replace(outcome, reconstruction=dataclasses.replace(outcome.reconstruction,
                                                                             stop_reason="diverged", diverged=[0]))
    (row,) = pc.metrics_rows([diverged])
    assert row["Status"].startswith("diverged: the image is the fit's last good state")
    rows = list(csv.DictReader(io.StringIO(pc.metrics_csv([diverged]).decode())))
    assert rows[0]["fit_note"] == row["Status"] and rows[0]["stop_reason"] == "diverged"


def test_run_keys_ignore_settings_that_do_not_matter():
    scan = settings.ScanSettings(views=30)
    a = pc.method_settings("fbp", 10, 20, "preview", "auto")
    b = pc.method_settings("fbp", 50, 20, "paper", "auto")
    assert pc.run_key("x", scan, "fbp", a) == pc.run_key("x", scan, "fbp", b)
    assert pc.run_key("x", scan, "cgls", pc.method_settings("cgls", 10, None, "preview", "auto")) != \
        pc.run_key("x", scan, "cgls", pc.method_settings("cgls", 11, None, "preview", "auto"))
    assert pc.method_settings("lrnn", 10, None, "paper", "auto").iterations is None
    assert pc.run_key("x", scan, "fbp", a) != pc.run_key("x", settings.ScanSettings(views=31), "fbp", a)
    # network fit options: None = the recommended ones, [] = the paper formulation; they key networks only
    assert a.variant == settings.recommended_variants()
    plain = pc.method_settings("lrnn", None, 20, "preview", "auto", [])
    assert plain.variant == ("paper",) and plain.iterations == 20
    assert pc.method_settings("lrnn", None, 20, "preview", "auto", ["tv", "ramp_loss"]).variant == ("ramp_loss", "tv")
    assert pc.run_key("x", scan, "lrnn", plain) != pc.run_key("x", scan, "lrnn", pc.method_settings(
        "lrnn", None, 20, "preview", "auto", ["ramp_loss"]))
    assert pc.run_key("x", scan, "cgls", pc.method_settings("cgls", 10, None, "preview", "auto", [])) == \
        pc.run_key("x", scan, "cgls", pc.method_settings("cgls", 10, None, "preview", "auto", ["tv"]))
    options, default = pc.variant_options()
    assert "paper" not in options and set(options) == set(registry.VARIANT_NAMES) - {"paper"}
    assert tuple(default) == settings.recommended_variants() == (registry.RECOMMENDED,)
    assert registry.variant_label(default[0]) == "Each network's recommended fit"
    help_text = pc.variant_help()
    for network, names in registry.RECOMMENDED_VARIANTS.items():  # the help spells out each network's set
        assert f"{registry.label(network)}: " + ", ".join(registry.variant_label(v) for v in names) in help_text


def _small_problem(size: int = 32):
    ct = data.load_sample("shepp_logan", size)
    return ct, scans.simulate(ct, settings.ScanSettings(views=12))


def _tasks(methods, method_settings=None):
    return [run.Task(m, method_settings or settings.MethodSettings(), ("k", m)) for m in methods]


def test_job_runs_in_background_and_stop_keeps_the_partial_result(monkeypatch):
    ct, scan = _small_problem()
    started = threading.Event()
    real = registry.run

    def slow(method, sinogram, geometry, callback=None, stop=None, **kwargs):
        if method == "fbp":
            return real(method, sinogram, geometry, **kwargs)
        for i in range(1, 10_000):
            callback(SimpleNamespace(iteration=i, iterations=10_000, loss=1.0 / i,
                                     image=np.zeros(ct.hu.shape, np.float32) if i % 5 == 0 else None))
            if i >= 10:
                started.set()
            if stop.is_set():
                break
            threading.Event().wait(0.002)
        result = real("fbp", sinogram, geometry, **kwargs)
        result.iterations, result.stop_reason = i, "stopped"
        return result

    monkeypatch.setattr(registry, "run", slow)
    job = Job(_tasks(("fbp", "lrnn", "tv")), scan).start()
    assert started.wait()
    job.request_stop()
    assert job.wait()
    assert job.progress["fbp"].status == "done"
    assert job.progress["lrnn"].status == "stopped" and job.results[("k", "lrnn")].stopped
    assert job.progress["lrnn"].preview_hu is not None and job.progress["lrnn"].loss is not None
    assert job.progress["tv"].status == "cancelled" and ("k", "tv") not in job.results
    assert "stopped" in job.progress["lrnn"].text()


def test_finished_runs_carry_their_consistency_map():
    from sparsect.app import outputs
    from sparsect.reconstruct.consistency import data_consistency_hu

    _, scan = _small_problem()
    job = Job(_tasks(("fbp",)), scan).start()
    assert job.wait()
    outcome = job.results[("k", "fbp")]
    expected = data_consistency_hu(outcome.reconstruction.mu, scan.sinogram, scan.geometry, scan.pixel_size_mm)
    np.testing.assert_allclose(outcome.consistency_hu, expected, atol=1e-4)
    maps = outputs.trust_maps([outcome], name=lambda o: registry.label(o.method))
    assert maps[outputs.CONSISTENCY]["FBP"] is outcome.consistency_hu and maps[outputs.UNCERTAINTY] == {}


def test_job_stop_interrupts_a_classical_method_mid_run(monkeypatch):
    ct, scan = _small_problem()
    checks = []
    real = registry.run

    def stop_on_the_fourth_check(method, *args, stop=None, **kwargs):
        def stop_pressed_during_iteration_3():  # the real run, with Stop pressed on the 4th check
            checks.append(method)
            if len(checks) == 4:
                job.request_stop()
            return stop.is_set()

        return real(method, *args, stop=stop_pressed_during_iteration_3, **kwargs)

    monkeypatch.setattr(registry, "run", stop_on_the_fourth_check)
    job = Job(_tasks(("sirt", "cgls"), settings.MethodSettings(iterations=50, device="cpu")), scan)
    job.start()
    assert job.wait()
    assert checks == ["sirt"] * 4  # stopped inside SIRT; CGLS never started
    outcome = job.results[("k", "sirt")]
    assert outcome.stopped and outcome.reconstruction.iterations == 3
    assert job.progress["sirt"].status == "stopped" and job.progress["sirt"].iteration == 3
    assert job.progress["sirt"].fraction == pytest.approx(3 / 50)
    assert pc.status(outcome) == "stopped early" and "stopped" in job.progress["sirt"].text()
    assert job.progress["cgls"].status == "cancelled" and ("k", "cgls") not in job.results
    monkeypatch.undo()
    np.testing.assert_allclose(outcome.image_hu, _outcome("sirt", scan, 3).image_hu, rtol=0, atol=1e-3)


def test_job_shows_live_progress_of_a_classical_method():
    ct, scan = _small_problem()
    job = Job(_tasks(("sirt",), settings.MethodSettings(iterations=12, device="cpu")), scan)
    job.start()
    assert job.wait()
    progress, outcome = job.progress["sirt"], job.results[("k", "sirt")]
    assert progress.status == "done" and progress.iteration == 12
    assert progress.loss == outcome.reconstruction.curve[-1] and progress.preview_iteration == 12
    np.testing.assert_allclose(progress.preview_hu, outcome.image_hu, rtol=0, atol=1e-2)


def test_job_reports_errors_as_messages(monkeypatch):
    ct, scan = _small_problem()

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(registry, "run", broken)
    job = Job(_tasks(("sirt",)), scan).start()
    assert job.wait()
    assert job.progress["sirt"].error == "SIRT failed: out of memory"


def test_downloads_npz_and_dicom_zip():
    ct, scan = _small_problem()
    outcomes = [_outcome("fbp", scan)]
    arrays = np.load(io.BytesIO(pc.results_npz(ct, scan, outcomes, settings.ScanSettings(views=12))))
    assert arrays["fbp_hu"].shape == ct.hu.shape and arrays["reference_hu"].shape == ct.hu.shape
    archive = pc.dicom_zip(ct, outcomes, 12)
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert names and all(n.startswith("fbp/") for n in names)
    scanned = data.scan_bytes([("derived.zip", archive)])
    assert len(scanned.series) == 1 and "FBP 12 views" in scanned.series[0].description
    ranked = {c for c, pick in pc.BEST.items()} - {"PSNR window (dB)", "SSIM window"}
    assert set(pc.best_cells(pc.metrics_rows(outcomes * 2))) == ranked
    rows = pc.metrics_rows(outcomes * 2, scan.reference_hu, (0.0, 80.0))
    assert set(pc.best_cells(rows)) == set(pc.BEST)
    assert rows[0]["PSNR window (dB)"] == pytest.approx(
        metrics.psnr(outcomes[0].image_hu, scan.reference_hu, (0.0, 80.0), "circle"))


def test_dicom_zip_shows_one_pseudonymous_patient_and_study():
    import pydicom

    ct, scan = _small_problem()
    outcomes = [_outcome(m, scan, 3 if m == "sirt" else None) for m in ("fbp", "sirt")]
    archive = zipfile.ZipFile(io.BytesIO(pc.dicom_zip(ct, outcomes, 12)))
    derived = [pydicom.dcmread(io.BytesIO(archive.read(name))) for name in archive.namelist()]
    assert {d.SeriesDescription.split()[0] for d in derived} == {"FBP", "SIRT"}
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert len({str(d[keyword].value) for d in derived}) == 1, keyword
    assert derived[0].PatientID.startswith("ANON-")
    assert len({int(d.SeriesNumber) for d in derived}) == 2


def test_serve_passes_the_safety_settings_and_config_matches():
    cmd = serve.command(port=8765, host="127.0.0.1")
    assert Path(cmd[cmd.index("run") + 1]) == ROOT / "app" / "page" / "main.py"
    flags = dict(zip(cmd[cmd.index("run") + 2::2], cmd[cmd.index("run") + 3::2], strict=True))
    assert flags["--server.port"] == "8765" and flags["--server.address"] == "127.0.0.1"
    assert flags["--browser.gatherUsageStats"] == "false" and flags["--server.headless"] == "true"
    assert flags["--global.developmentMode"] == "false" and flags["--client.showErrorDetails"] == "false"
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["showErrorDetails"] is False
    assert int(flags["--server.maxUploadSize"]) == config["server"]["maxUploadSize"] == serve.MAX_UPLOAD_MB
    assert serve.environment()["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"


# ------------------------------------------------------------------------------------------ the page (AppTest)


def test_page_ticks_the_missions_methods_and_starts_on_the_slices_grid_when_they_are_quick():
    at = _app()  # the test session's calibration (conftest.py): a fast machine
    ticked = {m for m in registry.METHODS if at.sidebar.checkbox(key=f"use_{m}").value}
    assert ticked == set(registry.PAGE_METHODS) == {"fbp", "tv", "wire", "lrnn"}
    assert at.sidebar.selectbox(key="size").value == "Original"  # ct_small's own 128 x 128
    captions = _texts(at.sidebar.caption)
    assert "Ticked methods: " in captions and "on this server at 128 x 128" in captions
    label = at.sidebar.checkbox(key="use_lrnn").label
    assert label.startswith("LRNN ") and ("~" in label or "<1 s" in label)  # its estimate beside it


def test_page_first_working_size_is_the_largest_the_ticked_methods_take_under_a_minute_on(calibrated):
    calibrated({"fbp": 1e-9, "pair": 1e-9, "matrix": 1e-9, "tv_image": 1e-9, "network": 3e-6})
    at = _app()  # the four methods: ~1 min 40 s at 128 x 128, ~26 s at 64 x 64
    assert at.sidebar.selectbox(key="size").value == "64 x 64"
    assert "on this server at 64 x 64; the largest grid" in _texts(at.sidebar.caption)
    _tick(at, "fbp").run()  # quick: the slice's own grid
    assert at.sidebar.selectbox(key="size").value == "Original"
    at.sidebar.selectbox(key="size").set_value("128 x 128").run()  # the visitor's choice stays
    _tick(at, *registry.PAGE_METHODS).run()
    assert not at.exception and at.sidebar.selectbox(key="size").value == "128 x 128"


def test_page_fan_beam_and_the_same_grid_simulation():
    at = _app()
    at.sidebar.selectbox(key="size").set_value("64 x 64")
    at.sidebar.radio(key="beam").set_value("fan").run()
    assert not at.exception, at.exception
    assert at.sidebar.slider(key="arc_fan").value == 360  # a fan beam scans a full turn by default
    at.sidebar.selectbox(key="simulation").set_value("same-grid")
    _tick(at, "fbp")
    at.sidebar.button(key="run").click().run()
    assert not at.exception and not at.error, (at.exception, _texts(at.error))
    caption = _texts(at.caption)
    assert "fan beam" in caption and "same-grid (inverse crime) simulation (64 x 64 grid, 1 ray(s) per bin)" in caption
    assert list(_metrics(at).index) == ["FBP"]


def test_page_shows_a_run_that_finished_before_its_progress_section(monkeypatch):
    """A fast run can end while the page is still drawing the input row: its results appear all the same."""
    def start_and_finish(job):
        job._thread.start()
        job._thread.join()
        job.queried = False
        return job

    def running_only_when_first_asked(job):  # still running just after Run, finished a moment later
        first, job.queried = not getattr(job, "queried", True), True
        return first or job._thread.is_alive()

    monkeypatch.setattr(Job, "start", start_and_finish)
    monkeypatch.setattr(Job, "running", property(running_only_when_first_asked))
    at = _app()
    at.sidebar.selectbox(key="size").set_value("64 x 64")
    _tick(at, "fbp")
    at.sidebar.button(key="run").click().run()
    assert not at.exception and not at.error, (at.exception, _texts(at.error))
    assert list(_metrics(at).index) == ["FBP"]


def test_page_run_fbp_compare_windows_and_reader_study():
    at = _app()
    assert at.sidebar.selectbox(key="sample").value == "ct_small"
    at.sidebar.button(key="views_30").click().run()
    assert at.sidebar.slider(key="views").value == 30
    at.sidebar.slider(key="views").set_value(45).run()
    _tick(at, "fbp", "cgls")
    at.sidebar.button(key="run").click().run()
    assert not at.exception, at.exception
    table = _metrics(at)
    assert list(table.index) == ["FBP", "CGLS"]
    assert table.loc["CGLS", "PSNR (dB)"] > 20 and table.loc["FBP", "Iterations"] == 0
    captions = [c for img in at.image for c in img.captions]
    assert {"Ground truth", "FBP", "CGLS"} <= set(captions)
    assert "45 views" in _texts(at.caption) and "honest simulation" in _texts(at.caption)
    assert "PSNR range (dB)" in table.columns and "SSIM window" in table.columns
    assert "sinogram residual A x - y" in _texts(at.caption)  # a data-consistency row beside the differences
    assert "seed ensemble" not in _texts(at.caption)  # no ensemble fitted: no uncertainty row

    for preset in ("brain", "bone", "lung", "full", "custom"):
        at.selectbox(key="window").set_value(preset).run()
        assert not at.exception, at.exception
    at.number_input(key="cmp_ww").set_value(1000).run()
    assert not at.exception and at.number_input(key="cmp_wc").value == 40
    at.toggle(key="zoom").set_value(True).run()
    assert "Zoomed region" in _texts(at.caption)
    at.radio(key="profile_axis").set_value("column").run()
    assert not at.exception, at.exception

    # widget changes do not recompute: the cached result objects are reused
    before = dict(at.session_state["results"])
    at.selectbox(key="window").set_value("soft_tissue").run()
    at.sidebar.button(key="run").click().run()
    assert at.session_state["results"] == before

    _reader_study(at)


def _reader_study(at) -> None:
    """The reader study on a page that shows FBP and CGLS: blinded labels, ratings, the CSV, unblinding."""
    at.sidebar.toggle(key="reader_mode").set_value(True).run()
    assert not at.exception, at.exception
    assert "Metrics" not in [h.value for h in at.subheader]
    captions = [c for img in at.image for c in img.captions]
    assert "Image A" not in captions and "Enter your initials" in _texts(at.info)  # a reader first
    at.text_input(key="reader_name").input("JD").run()
    captions = [c for img in at.image for c in img.captions]
    assert "Image A" in captions and "Image B" in captions and "FBP" not in captions
    study = f"{at.session_state['reader_seed']:06d}"
    key = lambda kind, lab: pr.widget_key(kind, study, "JD", lab)  # noqa: E731
    assert at.selectbox(key=key("r", "A")).value is None and at.selectbox(key=key("r", "B")).value is None
    assert "Rank every image" in _texts(at.warning)
    at.slider(key=key("q", "A")).set_value(5)
    at.selectbox(key=key("r", "A")).set_value(2)
    at.selectbox(key=key("r", "B")).set_value(1).run()
    assert "Rank every image" not in _texts(at.warning)
    rows = list(csv.DictReader(io.StringIO(at.session_state["reader_csv"].decode())))
    assert [r["label"] for r in rows] == ["A", "B"] and rows[0]["quality"] == "5" and rows[0]["rank"] == "2"
    assert rows[0]["reader"] == "JD" and rows[0]["method"] == ""
    assert sorted(r["position"] for r in rows) == ["1", "2"]
    assert len(at.get("download_button")) >= 1
    at.button(key="reveal").click().run()
    rows = list(csv.DictReader(io.StringIO(at.session_state["reader_csv"].decode())))
    assert sorted(r["method"] for r in rows) == ["cgls", "fbp"]
    assert "Unblinded" in _texts(at.success)


def test_page_corrupt_upload_shows_a_message():
    at = _app()
    at.sidebar.radio(key="source").set_value("Upload DICOM").run()
    at.sidebar.file_uploader(key="upload").set_value(("broken.dcm", b"\0" * 128 + b"DICM\x02\x00", "application/dicom"))
    at.run()
    assert not at.exception, at.exception
    message = _texts(at.main.error)
    assert "broken.dcm" in message and "No usable CT image" in message
    assert not at.sidebar.error and len(message) < 300  # one short message, in the main pane
    at.sidebar.file_uploader(key="upload").set_value(("ct.dcm", _ct_small_bytes(), "application/dicom")).run()
    assert not at.exception and not at.sidebar.error and not at.main.error
    assert "Uploaded series" in _texts(at.caption)


def test_page_refuses_settings_that_do_not_fit_in_memory(monkeypatch):
    monkeypatch.setenv("SPARSECT_AVAILABLE_MEMORY", str(2**20))  # 1 MiB: nothing fits
    at = _app()
    assert not at.exception, at.exception
    message = _texts(at.main.error)
    assert "cannot be used" in message and "needs about" in message and "available" in message
    assert len(message) < 300


def test_a_reload_offers_the_finished_runs_back():
    def page():
        at = _app()
        at.sidebar.slider(key="views").set_value(37)  # settings no other test uses
        _tick(at, "fbp", "cgls").run()
        return at

    first = page()
    first.sidebar.button(key="run").click().run()
    assert not first.exception, first.exception
    table = _metrics(first)
    reloaded = page()  # a new session, as after a browser reload
    assert not reloaded.exception, reloaded.exception
    assert "kept on this server: FBP, CGLS" in _texts(reloaded.info)
    assert not [d for d in reloaded.dataframe if "PSNR (dB)" in getattr(d.value, "columns", [])]
    reloaded.button(key="restore_runs").click().run()
    assert "job" not in reloaded.session_state  # nothing was recomputed
    assert _metrics(reloaded).equals(table)


def test_page_tiny_lrnn_run():
    at = _app()
    at.sidebar.selectbox(key="size").set_value("64 x 64")
    _tick(at, "fbp", "lrnn")
    at.sidebar.number_input(key="iters_neural").set_value(20)
    at.sidebar.button(key="run").click().run()
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    table = _metrics(at)
    lrnn = _network_row(table, "LRNN")
    assert lrnn == ("LRNN, 3 seeds, FBP warm start, 128² grid first, ramp-weighted loss, blended with TV by "
                    "frequency band")
    assert table.loc[lrnn, "Iterations"] == 20 and table.loc[lrnn, "Parameters"] > 0


def test_page_seed_ensemble_shows_its_uncertainty():
    at = _app()
    at.sidebar.selectbox(key="size").set_value("64 x 64")
    _tick(at, "fbp", "lrnn")
    at.sidebar.multiselect(key="variants").set_value(["ensemble"])
    at.sidebar.number_input(key="iters_neural").set_value(5)
    at.sidebar.button(key="run").click().run()
    assert not at.exception and not at.error, (at.exception, _texts(at.error))
    captions = _texts(at.caption)
    assert "sinogram residual A x - y" in captions and "across the networks of a seed ensemble" in captions
    table = _metrics(at)
    assert table.loc[_network_row(table, "LRNN"), "Iterations"] == 5


def test_page_network_progress_with_a_stand_in_model(monkeypatch):
    """The network path (callback, preview, iterations, parameters, fit options) with a fast stand-in for
    the network fit, so the page's wiring is covered without fitting a network."""
    calls = []

    def reconstruct_neural(method, sinogram, geometry, pixel_size_mm, preset, iterations, seed, device, variant,
                           photons, callback, stop, ensemble_size):
        assert photons == math.inf or photons > 0  # the scan's noise level reaches the network's variants
        assert ensemble_size == ENSEMBLE_SIZE  # the page fits the default ensemble
        result = classical.fbp(sinogram, geometry, pixel_size_mm=pixel_size_mm)
        for i in range(1, iterations + 1):
            callback(SimpleNamespace(iteration=i, iterations=iterations, loss=1.0 / i, elapsed=0.01 * i, lr=1e-3,
                                     image=(result.mu.cpu().numpy() * pixel_size_mm) if i % 5 == 0 else None))
        calls.append((method, preset, iterations, variant))
        result.iterations, result.n_parameters, result.curve = iterations, 3025, [1.0 / i for i in range(1, 21)]
        return result

    monkeypatch.setattr(neural, "reconstruct_neural", reconstruct_neural)  # the registry imports it per run
    at = _app()
    _tick(at, "fbp", "wire")
    at.sidebar.number_input(key="iters_neural").set_value(20)
    at.sidebar.button(key="run").click().run()
    assert not at.exception, at.exception
    # the recommended fit options by default
    recommended = (registry.RECOMMENDED,)  # each network's own set, resolved by the fit
    assert calls == [("wire", "preview", 20, recommended)]
    table = _metrics(at)
    wire = _network_row(table, "WIRE")
    assert table.loc[wire, "Iterations"] == 20 and table.loc[wire, "Parameters"] == 3025
    assert "WIRE" in [c for img in at.image for c in img.captions]

    # the "Network fit options" selection reaches the fit (and is part of the result's cache key)
    assert at.sidebar.multiselect(key="variants").value == list(recommended)
    at.sidebar.multiselect(key="variants").set_value(["tv", "fbp_init"]).run()
    at.sidebar.button(key="run").click().run()
    at.sidebar.multiselect(key="variants").set_value([]).run()
    at.sidebar.button(key="run").click().run()
    assert not at.exception, at.exception
    assert [c[3] for c in calls] == [recommended, ("fbp_init", "tv"), ("paper",)]


def test_page_script_is_a_main_with_short_section_functions():
    """Issue #13: module level of the page script is imports, constants, definitions and the main() call;
    no function of the page modules is longer than 80 lines."""
    import ast

    tree = ast.parse(Path(PAGE).read_text())
    allowed = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.FunctionDef, ast.ClassDef)
    docstring = lambda node: isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)  # noqa: E731
    statements = [node for node in tree.body if not docstring(node)]
    *definitions, guard = statements
    assert all(isinstance(node, allowed) for node in definitions), [ast.dump(n)[:80] for n in definitions
                                                                     if not isinstance(n, allowed)]
    assert ast.unparse(guard) == "if __name__ == '__main__':\n    main()"
    for path in (ROOT / "app" / "page").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 80, f"{path.name}: {node.name} is too long"
