"""`sparsect reconstruct` end to end: outputs readable by independent tools, clear errors.
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from sparsect import data
from sparsect.app import records, run, scans, settings, stopping
from sparsect.app.cli import cli
from sparsect.reconstruct import metrics, registry
from sparsect.reconstruct.neural import RECOMMENDED_VARIANTS

runner = CliRunner()
JSON_KEYS = set(records.RECORD_FIELDS)


def _invoke(*args):
    return runner.invoke(cli, ["reconstruct", *args])


def test_reconstruct_sample_writes_readable_outputs(tmp_path):
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "64", "--views", "16", "--method", "fbp", "--method", "cgls",
                     "--iterations", "10", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["method"] for r in records] == ["fbp", "cgls"]
    assert all(set(r) == JSON_KEYS for r in records)
    assert records[1]["iterations"] == 10 and records[0]["views"] == 16
    assert {r["stop_reason"] for r in records} == {"completed"}
    assert {r["variant"] for r in records} == {None}  # classical methods have no fit variant
    # the phantom's own 256² pixels are 4x finer than the 64² working grid: the scan is simulated from them
    simulated = {(r["simulation"], tuple(r["simulation_grid"]), r["sub_rays"]) for r in records}
    assert simulated == {("honest", (256, 256), 4)}

    arrays = np.load(out / "results.npz")
    reference = arrays["reference_hu"]
    assert reference.shape == (64, 64) and arrays["sinogram"].shape[0] == 16
    assert tuple(arrays["pixel_spacing_mm"]) == (4.0, 4.0) and arrays["slice_hu"].shape == (256, 256)
    for record in records:
        image = arrays[f"{record['method']}_hu"]
        # The printed numbers are the scikit-image-checked metrics of the saved image.
        assert record["psnr"] == pytest.approx(metrics.psnr(image, reference, mask="circle"), abs=1e-3)
        assert record["psnr_range"] == pytest.approx(metrics.psnr_range(image, reference, mask="circle"), abs=1e-3)
        with Image.open(out / f"{record['method']}.png") as png:
            assert png.size == (64, 64)
        (dicom_file,) = (out / "dicom" / record["method"]).glob("*.dcm")
        ds = pydicom.dcmread(dicom_file)
        assert ds.Modality == "CT" and "DERIVED" in ds.ImageType
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.abs(hu - image).max() < 0.5
    assert json.loads((out / "metrics.json").read_text()) == records


def test_methods_share_one_sinogram_and_comma_lists_work(tmp_path):
    result = _invoke("ct_small", "--views", "20", "--method", "fbp,sirt", "--iterations", "5", "--json")
    assert result.exit_code == 0, result.output
    methods = [json.loads(line)["method"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert methods == ["fbp", "sirt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/slice.dcm"], "no such file or folder"),
        ([get_testdata_file("MR_small.dcm", download=False)], "MR"),
        (["shepp_logan", "--views", "1"], "--views must be a whole number of at least 2"),
        (["shepp_logan", "-m", "sirt", "--iterations", "0"], "--iterations must be at least 1"),
        (["shepp_logan", "-m", "fbp,lrnn", "--preset", "bogus"], "unknown preset 'bogus'"),
        (["shepp_logan", "-m", "fbp", "--preset", "bogus"], "unknown preset 'bogus'"),
        (["shepp_logan", "--window", "bogus"], "unknown --window 'bogus'"),
        (["shepp_logan", "--size", "8"], "--size must be at least 16 pixels"),
        ([get_testdata_file("CT_small.dcm", download=False), "--slice", "99"], "--slice 99 is out of range"),
        (["ct_small", "--slice", "99"], "--slice 99 is out of range: the input has 1 slice(s)"),
        (["ct_small", "--size", "10000"],
         "--size 10000 would upscale the 128x128 slice 78.1x; at most 4x (--size 512)"),
        (["ct_smal"], "did you mean 'ct_small'?"),
        (["ct_small", "-m", "fpb"], "did you mean 'fbp'?"),
        (["shepp_logan", "--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
        (["shepp_logan", "--method", "magic"], "unknown method 'magic'"),
        (["no_such_sample"], "sample name (ct_small"),
        (["shepp_logan", "-m", "lrnn", "--variant", "magic"],
         "unknown variant 'magic'; choose from paper, tv, fbp_init, tv_init, coarse_to_fine, coarse_grid, ramp_loss"),
        (["shepp_logan", "-m", "lrnn", "--variant", "paper,tv"], "variant 'paper' is the published formulation"),
        (["shepp_logan", "--variant", ""], "no variant given"),
    ],
)
def test_bad_input_gives_clear_error(args, message, monkeypatch):
    started = []
    monkeypatch.setattr(registry, "run", lambda name, *a, **k: started.append(name))
    result = _invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert started == []  # found before any reconstruction ran


def test_out_is_one_run_s_folder_never_a_mix(tmp_path):
    """A second run into an earlier run's --out is refused unless --force, which replaces the folder whole; a
    folder sparsect did not write is never replaced."""
    out = tmp_path / "o1"
    first = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp,sirt", "--iterations", "2", "--out",
                    str(out))
    assert first.exit_code == 0, first.output
    assert (out / "sirt.png").exists() and (out / "dicom" / "sirt").is_dir()
    before = sorted(str(p) for p in out.rglob("*"))
    again = _invoke("ct_small", "--views", "8", "-m", "fbp", "--out", str(out))
    assert again.exit_code == 2 and "give --force to replace them whole" in " ".join(again.stderr.split())
    assert sorted(str(p) for p in out.rglob("*")) == before
    forced = _invoke("ct_small", "--views", "8", "-m", "fbp", "--out", str(out), "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert not (out / "sirt.png").exists() and not (out / "dicom" / "sirt").exists()  # nothing of the first run
    assert [r["method"] for r in json.loads((out / "metrics.json").read_text())] == ["fbp"]
    assert [p.name for p in tmp_path.iterdir()] == ["o1"]  # no staging or old folder left beside it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for extra in ([], ["--force"]):
        refused = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--out", str(mine), *extra)
        assert refused.exit_code == 2 and "holds no sparsect run" in " ".join(refused.stderr.split())
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    alone = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--force")
    assert alone.exit_code == 2 and "--force applies to --out" in alone.stderr


@pytest.mark.parametrize("layout", ["file", "dicom_is_a_file", "png_is_a_folder"])
def test_bad_out_is_refused_before_any_work_and_leaves_nothing(tmp_path, layout, monkeypatch):
    out = tmp_path / "out"
    if layout == "file":
        out.write_text("keep me")
    elif layout == "dicom_is_a_file":
        out.mkdir()
        (out / "dicom").write_text("keep me")
    else:
        (out / "fbp.png").mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    started = []
    monkeypatch.setattr(registry, "run", lambda name, *a, **k: started.append(name))
    result = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--out", str(out))
    assert result.exit_code == 2 and "--out" in result.output and "Traceback" not in result.output
    assert started == [] and sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_failure_after_the_run_leaves_out_untouched(tmp_path, monkeypatch):
    """Outputs are staged beside --out and swapped in only when all were written."""
    out = tmp_path / "out"
    assert _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--out", str(out)).exit_code == 0
    before = {str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise ValueError("disk full")

    monkeypatch.setattr(data, "write_series", broken)
    result = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--out", str(out), "--force")
    assert result.exit_code == 2 and "disk full" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert {str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def _outcome(method, scores, **reconstruction):
    fields = dict(settings={}, seconds=1.0, iterations=0, warm_start_iterations=0, n_parameters=0, device="cpu",
                  stop_reason="completed", diverged=[]) | reconstruction
    return run.Outcome(method, SimpleNamespace(**fields), scores=scores, views=30, data_rmse=0.01, seconds=1.0)


def test_records_are_strict_json_with_a_reason_for_null():
    record = _outcome("fbp", {"psnr": math.inf, "ssim": 1.0, "rmse_hu": 0.0, "psnr_range": math.inf,
                              "ssim_range": 1.0, "rmse_soft_hu": math.nan}).record()
    assert record["psnr"] is None and record["psnr_range"] is None and "equals the reference" in record["note"]
    assert record["rmse_soft_hu"] is None and "no reference pixel in [-200, 200] HU" in record["note"]
    assert record["fit_note"] is None and list(record) == list(records.RECORD_FIELDS)
    json.dumps(record, allow_nan=False)


def test_a_diverged_fit_and_a_left_out_member_are_marked_and_explained():
    """A fit that ran out of roll-backs is marked "!" with a legend; an ensemble that left a member out says so
    in its record's fit_note and under the table."""
    from sparsect.app.tables import results_table

    scores = dict.fromkeys(records.SCORE_DIGITS, 30.0)
    common = dict(iterations=40, n_parameters=10)
    diverged = _outcome("lrnn", scores, **common, stop_reason="diverged", diverged=[0],
                        settings={"variant": ["paper"]}).record()
    left_out = _outcome("siren", scores, **common, settings={
        "variant": ["ensemble"], "ensemble_size": 3, "ensemble_left_out": [{"slice": 0, "seed": 2}]}).record()
    assert diverged["stop_reason"] == "diverged" and "last good state" in diverged["fit_note"]
    assert left_out["fit_note"] == ("ensemble member(s) of seed 2 diverged: left out of the mean and the "
                                    "uncertainty map")
    assert diverged["fit"] == "LRNN, published fit" and left_out["fit"].startswith("SIREN, 3 seeds")
    text = " ".join(" ".join(_rendered(results_table([diverged, left_out], "30 views"))).split())
    assert "40!" in text and "! diverged" in text and "siren: ensemble member(s) of seed 2" in text
    assert "lrnn: LRNN, published fit" in text  # each network's fit in words
    # a batch of slices: each slice's note is its own
    batch = SimpleNamespace(diverged=[1], settings={"ensemble_left_out": [{"slice": 0, "seed": 5}]})
    assert [len(records.fit_notes(batch, i)) for i in range(3)] == [1, 1, 0]
    assert "seed 5" in records.fit_notes(batch, 0)[0] and "diverged:" in records.fit_notes(batch, 1)[0]


@pytest.mark.parametrize("args, asked, variant", [
    ([], ("recommended",), list(RECOMMENDED_VARIANTS["lrnn"])),
    (["--variant", "paper"], ("paper",), ["paper"]),
    (["--variant", "tv,ramp_loss", "--variant", "ramp_loss"], ("ramp_loss", "tv"), ["ramp_loss", "tv"]),
])
def test_network_fit_variant_defaults_to_the_recommended_one(monkeypatch, args, asked, variant):
    fitted = []
    run_method = registry.run

    def recording(name, *a, **kw):
        result = run_method(name, *a, **kw)
        fitted.append((name, kw["variant"], result.settings.get("variant")))
        return result

    monkeypatch.setattr(registry, "run", recording)
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "fbp,lrnn", "--iterations", "2",
                     "--device", "cpu", "--json", *args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert all(set(r) == JSON_KEYS for r in records)
    assert [(r["method"], r["variant"]) for r in records] == [("fbp", None), ("lrnn", variant)]
    # what reconstruct_neural was asked for and what it records having fitted
    assert fitted[1] == ("lrnn", asked, variant)


def test_parse_variants_canonical_form():
    assert settings.parse_variants(None) == settings.recommended_variants() == ("recommended",)
    assert settings.MethodSettings().variant == settings.recommended_variants()
    with pytest.raises(settings.InputError, match="each network's own recommended set"):
        settings.parse_variants("recommended,tv")
    assert settings.parse_variants("paper") == settings.parse_variants([]) == ("paper",)
    assert settings.parse_variants(["TV, ramp_loss", "fbp_init", "tv"]) == ("fbp_init", "ramp_loss", "tv")
    assert settings.parse_variants(("coarse_to_fine",)) == ("coarse_to_fine",)
    with pytest.raises(settings.InputError, match="unknown variant 'ramp'; choose from paper, tv"):
        settings.parse_variants("ramp")
    with pytest.raises(settings.InputError, match="cannot be combined with tv"):
        settings.parse_variants(["paper", "tv"])


def test_console_script_exit_code_and_message():
    completed = subprocess.run([sys.executable, "-m", "sparsect.app.cli", "reconstruct", "shepp_logan", "--views", "0"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "error:" in completed.stderr and "Traceback" not in completed.stderr


# ----------------------------------------------------------------------------------------------------
# Ctrl-C: the first stops gracefully, the second aborts
# ----------------------------------------------------------------------------------------------------

def _press_ctrl_c(monkeypatch, method: str, at: int, presses: int = 1) -> list[str]:
    """Make ``method`` "press Ctrl-C" ``presses`` times right after its progress report ``at``, by calling
    the SIGINT handler installed at that moment (the command's own), as the signal would; returns the list
    of methods started."""
    started: list[str] = []
    run_method = registry.run

    def patched(name, *args, callback=None, **kwargs):
        started.append(name)

        def progress(state):
            if callback is not None:
                callback(state)
            if name == method and state.iteration == at:
                for _ in range(presses):
                    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

        return run_method(name, *args, callback=progress, **kwargs)

    monkeypatch.setattr(registry, "run", patched)
    return started


def test_ctrl_c_stops_the_running_method_reports_and_writes_what_was_obtained(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    started = _press_ctrl_c(monkeypatch, "sirt", at=3)
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "fbp,sirt,cgls", "--iterations", "50",
                     "--out", str(out), "--json")
    assert result.exit_code == 130, result.output
    assert started == ["fbp", "sirt"]  # cgls never started
    assert signal.getsignal(signal.SIGINT) is before  # the command's handler is gone again
    assert "stopping after the current iteration; press Ctrl-C again to abort" in result.stderr
    assert "interrupted: sirt stopped after 3 iterations; not run: cgls" in result.stderr
    assert "Traceback" not in result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["method"] for r in records] == ["fbp", "sirt"] and all(set(r) == JSON_KEYS for r in records)
    assert records[0]["stop_reason"] == "completed"
    assert records[1]["stop_reason"] == "stopped" and records[1]["iterations"] == 3  # of 50

    # --out holds complete outputs of the methods that ran, and nothing of the others
    assert json.loads((out / "metrics.json").read_text()) == records
    arrays = np.load(out / "results.npz")
    assert {"reference_hu", "fbp_hu", "sirt_hu"} <= set(arrays.files) and "cgls_hu" not in arrays.files
    for name in ("fbp", "sirt"):
        with Image.open(out / f"{name}.png") as png:
            assert png.size == (32, 32)
        assert len(list((out / "dicom" / name).glob("*.dcm"))) == 1
    assert not (out / "cgls.png").exists() and not (out / "dicom" / "cgls").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    # the stopped result is SIRT's iterate after 3 iterations
    monkeypatch.undo()
    scan = scans.simulate(scans.load_input("shepp_logan", size=32), settings.ScanSettings(views=12, size=32))
    (three,) = run.reconstruct("sirt", [scan], settings.MethodSettings(iterations=3, device="cpu"))
    np.testing.assert_allclose(arrays["sirt_hu"], three.image_hu, atol=1e-3)


def test_ctrl_c_marks_the_stopped_method_in_the_table(monkeypatch):
    started = _press_ctrl_c(monkeypatch, "cgls", at=2)
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "cgls,sirt", "--iterations", "50")
    assert result.exit_code == 130, result.output
    assert started == ["cgls"]
    row = next(line for line in result.stdout.splitlines() if "cgls" in line)
    assert "2*" in [cell.strip() for cell in row.split("│")]  # iterations done, marked
    assert "* stopped by Ctrl-C" in result.stdout and "not run: sirt" in result.stderr


def test_second_ctrl_c_aborts_at_once_without_traceback(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    started = _press_ctrl_c(monkeypatch, "sirt", at=2, presses=2)
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "sirt,cgls", "--iterations", "50",
                     "--out", str(out))
    assert result.exit_code == 130, result.output
    assert started == ["sirt"]
    assert [line for line in result.stderr.splitlines() if "error:" in line] == ["error: aborted by Ctrl-C"]
    assert "Traceback" not in result.output and not out.exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_run_tasks_stop_keeps_the_partial_result_and_skips_the_rest():
    scan = scans.simulate(scans.load_input("shepp_logan", size=32), settings.ScanSettings(views=12, size=32))
    tasks = run.tasks_for(("fbp", "sirt", "cgls"), settings.MethodSettings(iterations=30, device="cpu"))
    stop = threading.Event()
    seen, skipped = [], []

    class Listener(run.RunListener):
        def progress(self, name, state):
            seen.append(name)
            if name == "sirt" and state.iteration == 4:
                stop.set()

        def skipped(self, name):
            skipped.append(name)

    outcomes = run.run_tasks(scan, tasks, Listener(), stop=stop).outcomes
    assert [o.method for o in outcomes] == ["fbp", "sirt"] and "cgls" not in seen and skipped == ["cgls"]
    record = outcomes[1].record()
    assert record["iterations"] == 4 and record["stop_reason"] == "stopped"
    assert 0 < record["psnr"] < 100 and 0 < record["ssim"] <= 1
    assert outcomes[0].record()["stop_reason"] == "completed"
    # a stop that fired before the run: no method starts; one that never fires changes nothing
    assert run.run_tasks(scan, tasks[:2], stop=lambda: True).outcomes == []
    (unstopped,) = run.run_tasks(scan, tasks[1:2], stop=threading.Event()).outcomes
    assert unstopped.reconstruction.iterations == 30 and unstopped.reconstruction.stop_reason == "completed"


def test_a_failing_method_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    real = registry.run

    def sirt_fails(name, *args, **kwargs):
        if name == "sirt":
            raise RuntimeError("solver blew up")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(registry, "run", sirt_fails)
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp,sirt,cgls", "--iterations", "3",
                     "--out", str(out), "--json")
    assert result.exit_code == 1 and "error: SIRT failed: solver blew up" in " ".join(result.stderr.split())
    assert [json.loads(line)["method"] for line in result.stdout.splitlines()] == ["fbp", "cgls"]
    assert (out / "cgls.png").exists() and not (out / "sirt.png").exists() and "Traceback" not in result.output


def test_graceful_stop_handler():
    calls = []
    before = signal.getsignal(signal.SIGTERM)
    with stopping.GracefulStop(calls.append, signals=(signal.SIGINT, signal.SIGTERM)) as graceful:
        assert signal.getsignal(signal.SIGTERM) == graceful.handle
        assert graceful.exit_code is None and not graceful.event.is_set()
        graceful.handle(signal.SIGTERM)
        graceful.handle(signal.SIGTERM)  # a repeated SIGTERM only repeats the request
        assert graceful.event.is_set() and calls == [signal.SIGTERM] * 2 and graceful.exit_code == 143
        with pytest.raises(KeyboardInterrupt):
            graceful.handle(signal.SIGINT)  # Ctrl-C once stopping: abort
    assert signal.getsignal(signal.SIGTERM) is before


def test_fan_beam_and_the_simulation_are_options():
    result = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--beam", "fan",
                     "--source-distance-mm", "400", "--detector-distance-mm", "200", "--json")
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert record["simulation"] == "honest" and record["simulation_grid"] == [256, 256]
    fan = scans.simulate(scans.load_input("shepp_logan", size=32), settings.scan_settings(
        views=8, beam="fan", size=32, source_distance_mm=400, detector_distance_mm=200))
    assert type(fan.geometry).__name__ == "FanBeam" and float(fan.geometry.angles[-1]) > 1.5 * math.pi  # full turn
    assert fan.geometry.source_distance == pytest.approx(400 / 8)  # 8 mm working pixels
    crime = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--simulation", "same-grid", "--json")
    (record,) = [json.loads(line) for line in crime.stdout.splitlines() if line.startswith("{")]
    assert (record["simulation"], record["simulation_grid"], record["sub_rays"]) == ("same-grid (inverse crime)",
                                                                                     [32, 32], 1)
    table = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp")
    assert "honest simulation (256x256 grid, 4 ray(s) per bin)" in " ".join(table.stdout.split())
    for args, message in ((["--beam", "cone"], "--beam must be parallel or fan"),
                          (["--simulation", "exact"], "--simulation must be honest or same-grid"),
                          (["--source-distance-mm", "400"], "need --beam fan"),
                          (["--beam", "fan", "--source-distance-mm", "100"], "half-diagonal")):
        bad = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", *args)
        assert bad.exit_code == 2 and message in bad.output, (args, bad.output)


def test_version():
    from sparsect import __version__

    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"sparsect {__version__}"


def _two_series(folder):
    for k, description in enumerate(("Soft tissue", "Bone")):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID, ds.SeriesDescription = f"1.2.826.0.1.3680043.8.498.{k + 1}", description
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)


def test_several_series_name_the_series_option(tmp_path):
    _two_series(tmp_path)
    result = _invoke(str(tmp_path), "--size", "32", "--views", "8", "-m", "fbp")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "--series UID" in message and "series_uid" not in message and "Traceback" not in message
    assert "1.2.826.0.1.3680043.8.498.1" in message and "1.2.826.0.1.3680043.8.498.2" in message
    chosen = _invoke(str(tmp_path), "--series", "1.2.826.0.1.3680043.8.498.2", "--size", "32", "--views", "8",
                     "-m", "fbp", "--json")
    assert chosen.exit_code == 0, chosen.output
    unknown = _invoke(str(tmp_path), "--series", "1.2.3", "--views", "8", "-m", "fbp")
    assert unknown.exit_code == 2 and "1.2.3" in unknown.stderr
    sample = _invoke("shepp_logan", "--series", "1.2.3", "--views", "8", "-m", "fbp")
    assert sample.exit_code == 2 and "--series applies to DICOM input" in " ".join(sample.stderr.split())


def test_anonymize_gives_one_pseudonymous_identity_and_distinct_series_numbers(tmp_path):
    import stat

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    runs = {}
    for anonymize in (False, True):
        out = tmp_path / f"out_{anonymize}"
        flag = ["--anonymize"] if anonymize else []
        result = _invoke("ct_small", "--size", "32", "--views", "8", "-m", "fbp,sirt", "--iterations", "2",
                         "--out", str(out), "--json", *flag)
        assert result.exit_code == 0, result.output
        runs[anonymize] = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
        assert sorted(int(d.SeriesNumber) for d in runs[anonymize]) == [1001, 1002]
    assert {str(d.PatientName) for d in runs[False]} == {str(source.PatientName)}
    anonymous = runs[True]
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        values = {str(d[keyword].value) for d in anonymous}
        assert len(values) == 1 and str(source[keyword].value) not in values, keyword
    assert all(d.PatientIdentityRemoved == "YES" for d in anonymous)
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in (tmp_path / "out_True").rglob("*") if p.is_file()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~umask}
    alone = _invoke("ct_small", "--views", "8", "-m", "fbp", "--anonymize")
    assert alone.exit_code == 2 and "give --out" in alone.stderr


def _rendered(table) -> list[str]:
    from rich.console import Console

    from sparsect.app.tables import WIDTH

    console = Console(width=WIDTH, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text().splitlines()


def test_tables_fit_80_columns_without_truncation():
    from sparsect.app.batch.command import summary_table
    from sparsect.app.tables import results_table, scores_table

    widest = {"method": "os_sart", "psnr": 99.99, "ssim": 0.9999, "rmse_hu": 4095.0, "seconds": 12345.67,
              "iterations": 10000, "warm_start_iterations": 100, "stop_reason": "stopped", "parameters": 1234567,
              "device": "cuda:0", "variant": None, "data_rmse": 1234.5678, "simulation": "same-grid (inverse crime)",
              "simulation_grid": [1024, 1024], "sub_rays": 1}
    lines = _rendered(results_table([widest, dict(widest, method="fbp", psnr=None)], "sparse-view reconstruction "
                                    "(1000 views) vs. the full slice"))
    assert max(map(len, lines)) <= 80 and not [line for line in lines if "…" in line]
    text = " ".join(lines)
    for word in ("method", "PSNR", "dB", "SSIM", "RMSE", "HU", "seconds", "iterations", "params", "device",
                 "12345.67", "100+10000*", "1234567", "4095.0", "cuda:0"):
        assert word in text, word
    group = {"method": "os_sart", "views": 1000, "slices": 1000, "psnr": {"mean": 99.99, "sd": 10.5},
             "ssim": {"mean": 0.9999, "sd": 0.1234}, "rmse_hu": {"mean": 1234.5, "sd": 123.4},
             "seconds": {"mean": 1234.56, "sd": 1.0}}
    lines = _rendered(scores_table([dict(widest, psnr_range=99.99, ssim_range=0.9999, rmse_soft_hu=4095.0)]))
    assert max(map(len, lines)) <= 80 and not [line for line in lines if "…" in line]
    for word in ("PSNR", "range", "dB", "SSIM", "soft", "tissue", "99.99", "0.9999", "4095.0", "inverse", "1235"):
        assert word in " ".join(lines), word
    lines = _rendered(summary_table({"groups": [group]}))
    assert max(map(len, lines)) <= 80 and not [line for line in lines if "…" in line]
    text = "".join(lines)
    for word in ("method", "views", "slices", "PSNR", "SSIM", "RMSE", "s/slice", "99.99", "10.50", "0.9999",
                 "0.1234", "1234.5", "123.4", "1234.56"):
        assert word in text, word


def test_warnings_are_one_line_on_stderr(capsys):
    """A fit's warning (a roll-back, a member left out) reaches the terminal as one "warning:" line, not as
    Python's file:line form with the source line under it."""
    import warnings

    assert runner.invoke(cli, ["samples"]).exit_code == 0
    warnings.warn("network 2 of 3: non-finite loss/gradient at iteration 11", RuntimeWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.strip() == "warning: network 2 of 3: non-finite loss/gradient at iteration 11"


def test_records_say_where_they_came_from(tmp_path):
    """Every record names its input, series, slice and window; de-identified output names neither input nor series."""
    import pydicom as dicom

    uid = str(dicom.dcmread(get_testdata_file("CT_small.dcm")).SeriesInstanceUID)
    result = _invoke("ct_small", "--views", "8", "-m", "fbp", "--window", "brain", "--photons", "1e4", "--json")
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert (record["input"], record["series"], record["window"]) == ("ct_small", uid, "brain")
    assert (record["photons"], record["noise_seed"], record["size"], record["arc_deg"]) == (1e4, 0, 128, 180.0)
    assert record["views"] == 8 and record["fit"] == "FBP" and record["version"]
    anonymous = _invoke("ct_small", "--views", "8", "-m", "fbp", "--anonymize", "--out", str(tmp_path / "o"),
                        "--json")
    (record,) = [json.loads(line) for line in anonymous.stdout.splitlines() if line.startswith("{")]
    assert record["input"] is None and record["series"] is None


def test_pictures_are_drawn_in_the_data_s_window_and_say_so(tmp_path):
    """A head slice's PNGs use its DICOM window (a body's the soft-tissue one) unless --window names one; each
    picture is labelled with the method, its scores and the window."""
    from sparsect.app import display

    head = data.load_sample("head_693")
    assert display.choose_window(head).label == "dicom 40/100"  # the slice's own WindowCenter/WindowWidth
    assert display.choose_window(data.load_sample("ct_small")).label == "soft_tissue"
    assert display.choose_window(head, "bone").bounds == metrics.window_bounds("bone")
    out = tmp_path / "out"
    result = _invoke("head_693", "--size", "64", "--views", "16", "-m", "fbp", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert record["window"] == "dicom 40/100"
    arrays = np.load(out / "results.npz")
    with Image.open(out / "fbp.png") as png:
        grey = np.asarray(png.convert("L"), dtype=float)
    expected = np.round(np.clip((arrays["fbp_hu"] + 10.0) / 100.0, 0, 1) * 255)  # 40/100: -10 to 90 HU
    inside = metrics.circle_mask(expected.shape)
    middle = np.zeros_like(inside)
    middle[17:30, 8:56] = True  # between the label at the top and the caption at the bottom
    assert np.abs(grey - expected)[inside & middle].max() <= 1
    assert (np.abs(grey - expected) > 1).any()  # the labels are drawn on the picture


def test_ctrl_c_during_the_simulation_stops_it_at_its_next_chunk(tmp_path, monkeypatch):
    """The first Ctrl-C stops the honest simulation at its next chunk (no method starts, nothing is written):
    every phase reports progress and checks the stop request, not only the methods' iterations."""
    real = data.simulate
    reports, started = [], []

    def pressing(*args, callback=None, stop=None, **kwargs):
        def report(state):
            reports.append((state.phase, state.done, state.total, stop.is_set()))
            if callback is not None:
                callback(state)
            if state.done == 2:
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

        return real(*args, callback=report, stop=stop, **kwargs)

    monkeypatch.setattr(data, "simulate", pressing)
    monkeypatch.setattr(registry, "run", lambda name, *a, **k: started.append(name))
    out = tmp_path / "out"
    result = _invoke("ct_small", "--size", "256", "--views", "30", "-m", "fbp", "--out", str(out))
    assert result.exit_code == 130, result.output
    assert started == [] and not out.exists() and [p.name for p in tmp_path.iterdir()] == []
    assert reports[0][:2] == ("simulation", 1) and reports[-1][1] == 2 < reports[-1][2]  # stopped at its next check
    assert "interrupted:" in result.stderr and "Traceback" not in result.output


def test_reconstruct_help_fits_80_columns_without_truncation():
    completed = subprocess.run([sys.executable, "-m", "sparsect.app.cli", "reconstruct", "--help"], capture_output=True,
                               text=True, timeout=120, env=dict(os.environ, COLUMNS="80", TERM="dumb"))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and not [line for line in lines if "…" in line]
    text = " ".join(completed.stdout.split())
    for option in ("--detector-distance-mm", "--source-distance-mm", "--same-study", "--force", "--window",
                   "--variant", "--simulation", "[default: auto]"):
        assert option in text, option
    assert "<bool>" not in text and "--no-" not in text
    assert "band_blend" in text  # the variants' help, below the options


def test_options_that_do_nothing_are_named():
    result = _invoke("ct_small", "--views", "8", "-m", "fbp", "--iterations", "50", "--variant", "ensemble",
                     "--preset", "paper", "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --preset and --variant apply to the networks (lrnn, wire, siren), none of which "
                        "is chosen: ignored", "warning: --iterations: fbp has no iterations: ignored"]
    quiet = _invoke("ct_small", "--views", "8", "-m", "fbp,sirt", "--iterations", "2", "--json")
    assert quiet.exit_code == 0 and "warning:" not in quiet.stderr
