"""``sparsect batch``: outputs for CT only, recorded failures, exit codes, kill-and-resume, shards, dry run, Ray.
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from rich.console import Console

from sparsect.app.batch import command as batch
from sparsect.app.batch import plan as batch_plan
from sparsect.app.batch import store as batch_store
from sparsect.app.batch import work as batch_work
from sparsect.app.batch.cli import register
from sparsect.app.settings import recommended_variants
from sparsect.reconstruct import registry
from sparsect.reconstruct.registry import RECOMMENDED_VARIANTS

ROOT = Path(__file__).resolve().parents[1]
# 2 series (3 + 2 slices of 128x128) x 2 view counts x 2 methods = 8 units; a few seconds on 2 cores.
OPTIONS = {"views": ["16,20"], "methods": ["fbp", "tv"], "iterations": 5, "device": "cpu"}
CLI_OPTIONS = ["--views", "16,20", "--method", "fbp,tv", "--iterations", "5", "--device", "cpu", "--quiet"]
SKIPPED_FILES = {"mr.dcm", "notes.txt"}  # not CT inputs: listed in skipped.jsonl, no failure
FAILED_FILES = {"truncated.dcm"}  # a CT input that cannot be read: a failure


def _write_series(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        position = [float(v) for v in ds.ImagePositionPatient]
        position[2] += 5.0 * i
        ds.ImagePositionPatient = position
        ds.SliceLocation = position[2]
        pixels = ds.pixel_array
        ds.PixelData = np.roll(pixels, 9 * i, axis=1).astype(pixels.dtype).tobytes()
        ds.save_as(folder / f"{i:03d}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Two small CT series, an MR file, a truncated DICOM and a text file."""
    root = tmp_path_factory.mktemp("batch") / "in"
    _write_series(root / "patient1" / "ct_a", 3)
    _write_series(root / "patient2" / "ct_b", 2)
    misc = root / "misc"
    misc.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), misc / "mr.dcm")
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (misc / "truncated.dcm").write_bytes(raw[: len(raw) // 2])
    (misc / "notes.txt").write_text("not a DICOM file\n")
    return root


def _run(in_dir: Path, out_dir: Path, **kwargs) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    code = batch.run_batch(in_dir, out_dir, console=Console(file=err, width=200),
                           stdout=Console(file=out, width=200), **kwargs)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """An uninterrupted run with OPTIONS."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code, _, err = _run(inputs, out, quiet=True, **OPTIONS)
    assert code == batch.EXIT_FAILURES, err
    return out


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def _comparable(out: Path) -> list[tuple]:
    return [tuple(r[k] for k in ("series", "slice", "views", "method", "psnr", "ssim", "rmse_hu")) for r in _rows(out)]


def _images(out: Path) -> dict[str, list[np.ndarray]]:
    """Derived series (folder relative to OUT_DIR -> pixel arrays in instance order)."""
    result = {}
    for folder in sorted({p.parent for p in out.rglob("*.dcm")}):
        datasets = sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))
        result[folder.relative_to(out).as_posix()] = [d.pixel_array for d in datasets]
    return result


def _no_partial_files(out: Path) -> None:
    visible = [p for p in out.rglob("*") if ".sparsect" not in p.parts]
    assert not [p for p in visible if p.name.startswith(".") or p.suffix in (".part", ".tmp")]
    for name in ("metrics.csv", "metrics.jsonl", "failures.jsonl"):
        if (out / name).exists():
            assert (out / name).read_bytes().endswith(b"\n") or (out / name).stat().st_size == 0
    for line in (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []:
        json.loads(line)


def test_outputs_for_ct_only_and_failures_recorded(inputs, reference):
    rows = _rows(reference)
    assert len(rows) == (3 + 2) * 2 * 2
    assert set(rows[0]) == set(batch_store.COLUMNS)
    assert {r["method"] for r in rows} == {"fbp", "tv"} and {r["views"] for r in rows} == {"16", "20"}
    assert all(float(r["psnr"]) > 20 and 0 < float(r["ssim"]) <= 1 for r in rows)
    assert all(float(r["psnr_range"]) > 10 and 0 < float(r["ssim_range"]) <= 1 for r in rows)
    # 128² slices reconstructed on their own grid: simulated from them upsampled to 256², 4 rays per bin
    assert {(r["simulation"], r["simulation_grid"], r["sub_rays"]) for r in rows} == {("honest", "256x256", "4")}
    assert len((reference / "metrics.jsonl").read_text().splitlines()) == len(rows)
    images = _images(reference)
    assert sorted(images) == [f"patient{p}/ct_{s}/{m}_{v}v" for p, s in ((1, "a"), (2, "b"))
                              for m in ("fbp", "tv") for v in (16, 20)]
    assert all(len(v) == (3 if "ct_a" in k else 2) and v[0].shape == (128, 128) for k, v in images.items())
    assert all((reference / f"{k}.png").is_file() for k in images)
    for k, slices in images.items():  # where to trust each unit: its data-consistency maps (no ensemble: no spread)
        with np.load(reference / f"{k}_maps.npz") as maps:
            assert maps["consistency_hu"].shape == (len(slices), 128, 128) and "uncertainty_hu" not in maps
            assert list(maps["slices"]) == list(range(len(slices)))
        assert (reference / f"{k}_consistency.png").is_file() and not (reference / f"{k}_uncertainty.png").exists()
    assert not (reference / "misc").exists()
    failures = [json.loads(line) for line in (reference / "failures.jsonl").read_text().splitlines()]
    assert {Path(f["file"]).name for f in failures} == FAILED_FILES
    assert "truncated" in failures[0]["reason"] and failures[0]["kind"] == "input"
    skipped = [json.loads(line) for line in (reference / "skipped.jsonl").read_text().splitlines()]
    assert {Path(f["file"]).name for f in skipped} == SKIPPED_FILES and {f["kind"] for f in skipped} == {"skipped"}
    reasons = {Path(f["file"]).name: f["reason"] for f in skipped}
    assert "not CT" in reasons["mr.dcm"] and "not a DICOM file" in reasons["notes.txt"]
    summary = json.loads((reference / "summary.json").read_text())
    assert {(g["method"], g["views"]) for g in summary["groups"]} == {(m, v) for m in ("fbp", "tv") for v in (16, 20)}
    assert summary["rows"] == len(rows) and summary["failures"] == 1 and summary["skipped"] == 2
    _no_partial_files(reference)


def test_another_simulation_redoes_every_unit(inputs, reference):
    _, _, honest = _run(inputs, reference, dry_run=True, **OPTIONS)
    _, _, crime = _run(inputs, reference, dry_run=True, simulation="same-grid", **OPTIONS)
    assert "already_done=8 todo=0" in honest and "already_done=0 todo=8" in crime
    code, _, err = _run(inputs, reference, dry_run=True, simulation="exact", **OPTIONS)
    assert code == batch.EXIT_CANNOT_START and "--simulation must be honest or same-grid" in err


def test_rerun_skips_done_units_without_duplicates(inputs, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    code, stdout, err = _run(inputs, out, **OPTIONS)
    assert code == batch.EXIT_FAILURES
    assert "already_done=8 todo=0" in err
    assert f"8 units done (8 already), 1 failed, 2 files skipped (not CT); results in {out / 'metrics.csv'}" in stdout
    assert _rows(out) == _rows(reference)


def test_exit_codes(inputs, tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(inputs / "patient2", clean)
    assert _run(clean, tmp_path / "o1", views=["16"], methods=["fbp"], device="cpu", quiet=True)[0] == batch.EXIT_OK
    assert len(_rows(tmp_path / "o1")) == 2
    for kwargs in ({"views": ["1"]}, {"methods": ["nope"]}, {"slices": "3-1"}, {"shard": "3/2"},
                   {"executor": "spark"}, {"device": "tpu"}, {"variant": ["magic"]}, {"variant": ["paper,tv"]}):
        code, _, err = _run(clean, tmp_path / "o2", **kwargs)
        assert code == batch.EXIT_CANNOT_START and "error" in err, kwargs
    assert _run(tmp_path / "missing", tmp_path / "o2")[0] == batch.EXIT_CANNOT_START
    assert _run(clean, clean / "out")[0] == batch.EXIT_CANNOT_START
    assert not (tmp_path / "o2").exists() and not (clean / "out").exists()


def test_dry_run_lists_units(inputs, reference, tmp_path):
    code, stdout, _ = _run(inputs, tmp_path / "new", dry_run=True, **OPTIONS)
    assert code == batch.EXIT_OK and not (tmp_path / "new").exists()
    lines = stdout.strip().splitlines()
    assert len(lines) == 8 and all(line.startswith("todo\t") for line in lines)
    assert {line.split("\t")[1] for line in lines} == set(_images(reference))
    code, stdout, _ = _run(inputs, reference, dry_run=True, **OPTIONS)
    assert [line.split("\t")[0] for line in stdout.strip().splitlines()] == ["done"] * 8


@pytest.mark.parametrize("n", [1, 3, 5, 11])
def test_shards_cover_every_unit_once(inputs, n):
    units, _ = batch_plan.plan(__import__("sparsect.data").data.scan(inputs).series, inputs,
                               batch_plan.BatchSettings(views=(16, 20, 30), methods=("fbp", "tv", "sirt")))
    shares = [batch_plan.shard(units, k, n) for k in range(1, n + 1)]
    keys = [u.key for share in shares for u in share]
    assert sorted(keys) == sorted(u.key for u in units) and len(set(keys)) == len(units) == 18
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_dry_run_shards_partition(inputs, tmp_path):
    listed = []
    for k in (1, 2, 3):
        code, stdout, _ = _run(inputs, tmp_path / "o", dry_run=True, shard=f"{k}/3", **OPTIONS)
        assert code == batch.EXIT_OK
        listed += [line.split("\t")[1] for line in stdout.strip().splitlines()]
    assert len(listed) == len(set(listed)) == 8


def _cli(in_dir: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sparsect.app.cli", "batch", str(in_dir), str(out), *CLI_OPTIONS],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_done(process: subprocess.Popen, out: Path, count: int, timeout: float = 90.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        done = len(list((out / batch_store.STATE_DIR / "done").glob("*.json")))
        if done >= count:
            return done
        time.sleep(0.02)
    raise AssertionError(f"no {count} finished unit(s) before exit/timeout: {process.stderr.read().decode()[-2000:]}")


def test_sigkill_sigterm_and_resume_match_uninterrupted_run(inputs, reference, tmp_path):
    out = tmp_path / "out"
    process = _cli(inputs, out)
    _wait_for_done(process, out, 1)
    process.kill()  # SIGKILL at an arbitrary point of the second unit
    process.wait(timeout=30)
    assert len(list((out / ".sparsect" / "done").glob("*.json"))) < 8
    _no_partial_files(out)

    process = _cli(inputs, out)  # SIGTERM: stops cleanly after the current unit
    before = _wait_for_done(process, out, len(list((out / ".sparsect" / "done").glob("*.json"))) + 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    assert b"run.interrupted" in stderr
    assert before <= len(list((out / ".sparsect" / "done").glob("*.json"))) < 8
    _no_partial_files(out)

    process = _cli(inputs, out)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == batch.EXIT_FAILURES, stderr.decode()[-2000:]
    _no_partial_files(out)
    assert _comparable(out) == _comparable(reference)  # same rows, same order, no duplicates
    mine, theirs = _images(out), _images(reference)
    assert sorted(mine) == sorted(theirs)
    for key in theirs:
        assert all(np.array_equal(a, b) for a, b in zip(mine[key], theirs[key], strict=True)), key
        assert (out / f"{key}.png").read_bytes() == (reference / f"{key}.png").read_bytes()
    assert (out / "failures.jsonl").read_text() == (reference / "failures.jsonl").read_text()
    assert not list((out / ".sparsect" / "staging").iterdir())


def test_ray_executor(inputs, reference, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        code, _, err = _run(inputs, tmp_path / "out", executor="ray", quiet=True, **OPTIONS)
    finally:
        ray.shutdown()
    assert code == batch.EXIT_FAILURES, err
    assert "event=ray.start" in err and "task_device=cpu" in err
    assert _comparable(tmp_path / "out") == _comparable(reference)
    assert (tmp_path / "out" / "failures.jsonl").read_text() == (reference / "failures.jsonl").read_text()


def test_networks_fitted_together_match_one_at_a_time():
    """--batch-size 2 fits both slices' LRNNs side by side; each slice must come out as it does alone."""
    from sparsect import data

    ct = data.load_sample("shepp_logan", 64)
    hu = np.stack([ct.hu, ct.hu[:, ::-1]]).astype(np.float32)
    payload = {"unit_id": "u", "method": "lrnn", "views": 16, "slices": [0, 1], "hu": hu, "spacing": (1.0, 1.0),
               "preset": "preview", "iterations": 30, "photons": None, "seed": 0, "device": "cpu",
               "variant": list(recommended_variants()), "simulation": "honest"}
    alone = batch_work.compute({**payload, "batch_size": 1})
    together = batch_work.compute({**payload, "batch_size": 2})
    assert alone["ok"] and together["ok"], (alone.get("error"), together.get("error"))
    assert together["batch_size"] == 2
    np.testing.assert_allclose(together["images"], alone["images"], atol=2.0)  # HU
    for a, b in zip(alone["rows"], together["rows"], strict=True):
        assert b["psnr"] == pytest.approx(a["psnr"], abs=0.01) and b["ssim"] == pytest.approx(a["ssim"], abs=1e-3)


def _markers(out: Path) -> dict[str, dict]:
    return {(r := json.loads(p.read_text()))["unit"]["method"]: r for p in (out / ".sparsect" / "done").glob("*.json")}


def test_variant_is_recorded_and_a_changed_variant_redoes_the_network_units(inputs, tmp_path):
    """--variant reaches the networks, lands in the manifest, the summary and every row; rerunning with
    another variant redoes the network units only (as another --preset would)."""
    import typer
    from typer.testing import CliRunner

    clean, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(inputs / "patient2", clean)
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    options = ["--views", "12", "--method", "fbp,lrnn", "--iterations", "2", "--slices", "middle", "--device", "cpu",
               "--quiet"]
    result = CliRunner().invoke(app, ["batch", str(clean), str(out), *options, "--variant", "paper"])
    assert result.exit_code == batch.EXIT_OK, result.output
    assert "variant=paper" in result.stderr and "todo=2" in result.stderr
    assert [(r["method"], r["variant"]) for r in _rows(out)] == [("fbp", ""), ("lrnn", "paper")]
    markers = _markers(out)
    assert markers["lrnn"]["settings"]["variant"] == ["paper"] and markers["lrnn"]["rows"][0]["variant"] == ["paper"]
    assert markers["fbp"]["rows"][0]["variant"] is None
    assert json.loads((out / "summary.json").read_text())["settings"]["variant"] == ["paper"]

    code, _, err = _run(clean, out, views=["12"], methods=["fbp", "lrnn"], iterations=2, slices="middle",
                        device="cpu", quiet=True)  # default: the recommended variants
    assert code == batch.EXIT_OK, err
    assert "already_done=1 todo=1" in err  # FBP kept, LRNN refitted
    recommended = "+".join(RECOMMENDED_VARIANTS["lrnn"])  # rows name the variants fitted
    assert [(r["method"], r["variant"]) for r in _rows(out)] == [("fbp", ""), ("lrnn", recommended)]
    assert _markers(out)["lrnn"]["settings"]["variant"] == list(recommended_variants()) == ["recommended"]
    # LRNN's recommended set named variant by variant is the same fit: nothing to redo
    code, _, err = _run(clean, out, views=["12"], methods=["fbp", "lrnn"], iterations=2, slices="middle",
                        device="cpu", quiet=True, variant=[recommended.replace("+", ",")])
    assert code == batch.EXIT_OK and "already_done=2 todo=0" in err


def test_payload_carries_the_variant():
    settings = batch_plan.BatchSettings(methods=("lrnn",), variant=("fbp_init", "ramp_loss"))
    unit = batch_plan.Unit(0, "uid", ".", (0,), 16, "lrnn")
    series = type("S", (), {"hu": np.zeros((1, 8, 8), np.float32), "spacing": (1.0, 1.0)})()
    assert batch_work.make_payload(unit, series, settings, "cpu", 0)["variant"] == ["fbp_init", "ramp_loss"]
    assert batch_plan.BatchSettings().variant == recommended_variants()


def test_auto_batch_size_on_cpu():
    assert batch_work.auto_batch_size("lrnn", (128, 128), "cpu") == 1
    assert batch_work.auto_batch_size("tv", (128, 128), "cpu") == 4


def test_outputs_follow_the_umask(reference):
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask  # what a plain open() creates
    files = [reference / "metrics.csv", reference / "summary.json", next(reference.rglob("*.dcm")),
             next(reference.rglob("*.png"))]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(expected)}


def _holder(out: Path, in_dir: Path, shard: str = "1/1") -> subprocess.Popen:
    """A process that takes the OUT_DIR lock and waits for stdin to close."""
    k, n = shard.split("/")
    code = ("import sys; from pathlib import Path; from sparsect.app.batch.store import Store; "
            "from sparsect.app.batch.plan import BatchSettings; "
            f"s = Store(Path({str(out)!r}), Path({str(in_dir)!r}), BatchSettings()); s.acquire({k}, {n}); "
            "print('locked', flush=True); sys.stdin.read()")
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked", process.stderr.read()
    return process


def test_a_second_batch_on_the_same_out_dir_exits_2_until_the_holder_dies(tmp_path):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), in_dir / "ct.dcm")  # one quick unit
    options = {"views": ["12"], "device": "cpu", "quiet": True}
    holder = _holder(out, in_dir)
    try:
        code, _, err = _run(in_dir, out, **options)
        assert code == batch.EXIT_CANNOT_START
        assert "in use by another sparsect batch" in err and f"pid {holder.pid}" in err
        assert not (out / "failures.jsonl").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops its flock
        holder.wait()
    code, _, err = _run(in_dir, out, **options)
    assert code == batch.EXIT_OK and "in use" not in err  # runs
    code, _, err = _run(in_dir, out, **options)
    assert code == batch.EXIT_OK and "in use" not in err  # the lock was released at the end


def test_only_disjoint_shards_of_one_split_share_an_out_dir(tmp_path):
    holder = _holder(tmp_path / "out", tmp_path, "1/2")
    try:
        stores = {}
        for shard in ("2/2", "1/2", "1/3", "1/1"):
            store = batch_store.Store(tmp_path / "out", tmp_path, batch_plan.BatchSettings())
            try:
                store.acquire(*map(int, shard.split("/")))
                stores[shard] = "ok"
            except batch_store.OutDirBusy as error:
                stores[shard] = str(error)
            finally:
                store.release()
    finally:
        holder.kill()
        holder.wait()
    assert stores["2/2"] == "ok"
    assert "same shard" in stores["1/2"] and "--shard K/3" in stores["1/3"] and "--shard K/1" in stores["1/1"]


def test_failures_describe_the_current_state(inputs, tmp_path, monkeypatch):
    """A unit that failed and later succeeds is no longer listed; nor is a stale failure of a done unit."""
    from sparsect.app.batch import executors

    clean, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(inputs / "patient2", clean)
    options = {"views": ["12"], "methods": ["fbp", "sirt"], "iterations": 3, "slices": "middle", "device": "cpu",
               "quiet": True}
    real = executors.compute
    monkeypatch.setattr(executors, "compute", lambda p: {"ok": False, "error": "boom"} if p["method"] == "sirt"
                        else real(p))
    code, _, _ = _run(clean, out, **options)
    assert code == batch.EXIT_FAILURES
    assert [json.loads(line)["method"] for line in (out / "failures.jsonl").read_text().splitlines()] == ["sirt"]
    assert json.loads((out / "summary.json").read_text())["failures"] == 1
    monkeypatch.setattr(executors, "compute", real)
    code, _, _ = _run(clean, out, **options)
    assert code == batch.EXIT_OK
    assert (out / "failures.jsonl").read_text() == ""
    assert json.loads((out / "summary.json").read_text())["failures"] == 0

    # A failure marker left beside a finished unit (what two jobs racing on one OUT_DIR used to leave):
    marker = next((out / ".sparsect" / "done").glob("*.json"))
    (out / ".sparsect" / "failed" / marker.name).write_text(json.dumps({"kind": "unit", "reason": "raced"}))
    code, _, err = _run(clean, out, **options)
    assert code == batch.EXIT_OK and "already_done=2 todo=0" in err
    assert (out / "failures.jsonl").read_text() == ""


def test_one_pseudonymous_identity_per_study_across_methods_and_runs(inputs, tmp_path):
    import hashlib
    import hmac

    clean, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(inputs / "patient2", clean)
    source = pydicom.dcmread(next(clean.rglob("*.dcm")))
    options = {"methods": ["fbp", "sirt"], "iterations": 3, "slices": "middle", "device": "cpu", "quiet": True,
               "anonymize": True}
    assert _run(clean, out, views=["12"], **options)[0] == batch.EXIT_OK
    assert _run(clean, out, views=["16"], **options)[0] == batch.EXIT_OK  # a second run of the job
    derived = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
    assert len(derived) == 4
    key = bytes.fromhex((out / ".sparsect" / "pseudonym.key").read_text())
    patient = "ANON-" + hmac.new(key, b"patient\0" + source.PatientID.encode(), hashlib.sha256).hexdigest()[:12].upper()
    assert {d.PatientID for d in derived} == {str(d.PatientName) for d in derived} == {patient}
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
        expected = "2.25." + str(int.from_bytes(
            hmac.new(key, b"uid\0" + str(source[keyword].value).encode(), hashlib.sha256).digest()[:16], "big"))
        assert {str(d[keyword].value) for d in derived} == {expected}, keyword
    assert sorted(int(d.SeriesNumber) for d in derived) == [1001, 1002, 1003, 1004]
    assert len({d.SeriesInstanceUID for d in derived}) == 4
    series = {r["series"] for r in _rows(out)}
    assert len(series) == 1 and source.SeriesInstanceUID not in series.pop()
    for name in ("metrics.csv", "metrics.jsonl", "summary.json", "failures.jsonl"):
        text = (out / name).read_text()
        assert source.SeriesInstanceUID not in text and source.StudyInstanceUID not in text, name


def test_a_fits_warnings_are_logged_with_its_unit(inputs, tmp_path, monkeypatch):
    """A warning raised while a unit is fitted (a roll-back, a member left out) is a ``unit.warning`` log line
    naming the unit, not Python's file:line form interleaved with the progress output; a failed unit's too."""
    import warnings

    clean = tmp_path / "in"
    shutil.copytree(inputs / "patient2", clean)
    real = registry.run

    def warned(method, *args, **kwargs):
        warnings.warn(f"network 1 of 1: non-finite loss/gradient at iteration 7 ({method})", RuntimeWarning,
                      stacklevel=1)
        if method == "sirt":
            raise ValueError("boom")
        return real(method, *args, **kwargs)

    monkeypatch.setattr(registry, "run", warned)
    code, _, err = _run(clean, tmp_path / "out", views=["12"], methods=["fbp", "sirt"], iterations=3,
                        slices="middle", device="cpu", quiet=True)
    assert code == batch.EXIT_FAILURES
    lines = [line for line in err.splitlines() if "event=unit.warning" in line]
    assert len(lines) == 2, err
    for method in ("fbp", "sirt"):
        line = next(line for line in lines if f"({method})" in line)
        assert "level=warning" in line and re.search(rf"unit=\S*{method}", line), line
        assert 'message="network 1 of 1: non-finite loss/gradient at iteration 7' in line
    assert "RuntimeWarning" not in err and "warnings.warn" not in err
