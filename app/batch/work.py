"""Work units of ``sparsect batch``: planning, the pure compute step, and the restartable output store.

A work unit is (series, chosen slices, views, method). Its outputs are one derived DICOM series
(``OUT/<input folder>/<method>_<views>v/``) and a PNG contact sheet next to it (``<method>_<views>v.png``).

Crash safety (SIGKILL at any moment):

1. the unit's files are written under ``OUT/.sparsect/staging/<id>/`` and then renamed into place;
2. only then is its done-marker ``OUT/.sparsect/done/<id>.json`` written (atomically); it holds the unit's
   metrics rows, the settings and the SHA-256 of every input file it read (the manifest);
3. ``metrics.csv``, ``metrics.jsonl``, ``failures.jsonl`` and ``summary.json`` are rebuilt from the markers
   and written atomically (under a file lock, for shards sharing one OUT_DIR).

A unit counts as done only when its marker exists, matches the current settings and input hashes and its
output files exist, so a rerun redoes exactly the unfinished units and never duplicates a row.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import math
import os
import re
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sparsect import __version__, data
from sparsect.app import outputs, pipeline
from sparsect.app.settings import MethodSettings, ScanSettings, parse_device, recommended_variants
from sparsect.reconstruct import registry

MANIFEST_VERSION = 1
STATE_DIR = ".sparsect"
COLUMNS = ("series", "slice", "views", "method", "variant", "psnr", "ssim", "rmse_hu", "seconds", "device",
           "version")


def version() -> str:
    """The sparsect version (``sparsect.__version__``)."""
    return __version__


# ----------------------------------------------------------------------------------------------------
# Option parsing
# ----------------------------------------------------------------------------------------------------

class PlanError(ValueError):
    """Bad batch options; the message says what to change."""


def parse_views(values: list[str]) -> list[int]:
    """View counts from repeated and/or comma-separated options, order kept, no repeats."""
    views: list[int] = []
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            try:
                n = int(item)
            except ValueError:
                raise PlanError(f"--views expects integers like 30,60, got {item!r}") from None
            if n < 2:
                raise PlanError(f"--views must be at least 2, got {n}")
            if n not in views:
                views.append(n)
    if not views:
        raise PlanError("no --views given")
    return views


_SLICES = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def check_slices(spec: str) -> str:
    """Validate ``all``, ``middle``, ``N`` or ``N-M`` (0-based, inclusive, in slice order)."""
    spec = spec.strip().lower()
    if spec in ("all", "middle"):
        return spec
    match = _SLICES.match(spec)
    if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
        raise PlanError(f"--slices must be all, middle, N or N-M (0-based, inclusive, N <= M), got {spec!r}")
    return spec


def select_slices(spec: str, n: int) -> tuple[int, ...]:
    """Slice indices of an ``n``-slice series chosen by ``spec`` (may be empty when out of range)."""
    if spec == "all":
        return tuple(range(n))
    if spec == "middle":
        return (n // 2,)
    match = _SLICES.match(spec)
    assert match is not None
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    return tuple(range(first, min(last, n - 1) + 1))


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) -> (K, N); None -> (1, 1)."""
    if spec is None:
        return 1, 1
    match = re.match(r"^\s*(\d+)\s*/\s*(\d+)\s*$", spec)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise PlanError(f"--shard must be K/N with 1 <= K <= N (e.g. 2/8 for the second of 8 jobs), got {spec!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class BatchSettings:
    """Everything that decides a unit's outputs (device and batch size do not). ``variant``: the networks'
    fit variants in the canonical form of :func:`sparsect.app.settings.parse_variants`."""

    views: tuple[int, ...] = (60,)
    methods: tuple[str, ...] = ("fbp",)
    slices: str = "all"
    preset: str = "preview"
    variant: tuple[str, ...] = field(default_factory=recommended_variants)
    iterations: int | None = None
    photons: float | None = None
    seed: int = 0
    anonymize: bool = False


# ----------------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """One work unit: the chosen slices of one series, reconstructed with one method at one view count."""

    series_index: int
    series_uid: str
    rel_dir: str
    slices: tuple[int, ...]
    views: int
    method: str

    @property
    def key(self) -> str:
        return f"{self.rel_dir}|{self.series_uid}|{self.views}|{self.method}"

    @property
    def id(self) -> str:
        return hashlib.sha1(self.key.encode()).hexdigest()[:20]

    @property
    def name(self) -> str:
        return f"{self.method}_{self.views}v"

    @property
    def out_rel(self) -> str:
        """Output folder of the derived series, relative to OUT_DIR."""
        return self.name if self.rel_dir in ("", ".") else f"{self.rel_dir}/{self.name}"

    def label(self) -> str:
        return f"{self.out_rel} [{_describe(self.slices)}]"


def _describe(slices: tuple[int, ...]) -> str:
    if not slices:
        return "no slices"
    if len(slices) == 1:
        return f"slice {slices[0]}"
    return f"slices {slices[0]}-{slices[-1]}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "series"


def _source_file(source: str, root: Path) -> Path:
    """The file on disk holding ``source`` (a path, or ``archive.zip/member`` for zip members)."""
    p = Path(source)
    while not p.is_file() and p != p.parent:
        p = p.parent
    return p if p.is_file() else root


def series_rel_dir(series: Any, root: Path) -> str:
    """Folder of a series' files relative to the input root ('.' for files directly in it)."""
    base = root if root.is_dir() else root.parent
    parents = [os.path.dirname(os.path.abspath(s)) for s in series.sources]
    common = os.path.commonpath(parents) if parents else str(base)
    try:
        rel = os.path.relpath(common, os.path.abspath(base))
    except ValueError:  # pragma: no cover - different drives
        rel = "."
    return "." if rel.startswith("..") else Path(rel).as_posix()


def plan(series_list: list[Any], root: Path, settings: BatchSettings) -> tuple[list[Unit], list[tuple[str, str]]]:
    """Units for every series x views x method, sorted by key; plus (file, reason) of series with no slice."""
    rels = [series_rel_dir(s, root) for s in series_list]
    units: list[Unit] = []
    problems: list[tuple[str, str]] = []
    for index, (series, rel) in enumerate(zip(series_list, rels, strict=True)):
        if rels.count(rel) > 1:  # several series in one folder: one subfolder each
            sub = f"{_slug(series.description)}_{hashlib.sha1(series.uid.encode()).hexdigest()[:8]}"
            rel = sub if rel == "." else f"{rel}/{sub}"
        slices = select_slices(settings.slices, len(series))
        if not slices:
            problems.append((series.sources[0], f"--slices {settings.slices} selects no slice of "
                                                f"{series.label()} (slices are 0-{len(series) - 1})"))
            continue
        for views in settings.views:
            for method in settings.methods:
                units.append(Unit(index, series.uid, rel, slices, views, method))
    units.sort(key=lambda u: u.key)
    return units, problems


def shard(units: list[Unit], k: int, n: int) -> list[Unit]:
    """Round-robin share ``k`` (1-based) of ``n`` of the sorted unit list: every unit in exactly one share."""
    return [u for i, u in enumerate(units) if i % n == k - 1]


# ----------------------------------------------------------------------------------------------------
# Compute (runs in the worker: local process, pool process or Ray task; no file access)
# ----------------------------------------------------------------------------------------------------

def make_payload(unit: Unit, series: Any, settings: BatchSettings, device: str, batch_size: int) -> dict[str, Any]:
    """What a worker needs for one unit: the slices' HU images and the settings (plain, picklable)."""
    return {
        "unit_id": unit.id, "method": unit.method, "views": unit.views, "slices": list(unit.slices),
        "hu": np.ascontiguousarray(series.hu[list(unit.slices)], dtype=np.float32),
        "spacing": (float(series.spacing[0]), float(series.spacing[1])),
        "preset": settings.preset, "variant": list(settings.variant), "iterations": settings.iterations,
        "photons": settings.photons, "seed": settings.seed, "device": device, "batch_size": batch_size,
    }


def auto_batch_size(method: str, shape: tuple[int, int], device: str) -> int:
    """Slices reconstructed at once when ``--batch-size`` is 0 (a CUDA out-of-memory error halves it).

    Classical methods on CUDA: from free GPU memory (iterates, duals, gradients and projector buffers,
    ~96 float32 images per slice), so small images fill the card. Networks on CUDA: enough slices for
    about 2^18 pixels per network evaluation (16 at 128², 4 at 256², 1 at 512²), since one small image
    leaves most of a GPU idle. On CPU the cores are already busy with one slice: classical methods take
    4 (one matrix product for all), networks 1 (measured: fitting 4 networks side by side is no faster
    on 2 cores).
    """
    pixels = shape[0] * shape[1]
    neural = method in registry.NETWORK_METHODS
    if not device.startswith("cuda"):
        return 1 if neural else 4
    if neural:
        return int(max(1, min(16, (1 << 18) // pixels)))
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(max(1, min(64, (free // 2) // (pixels * 4 * 96))))


def _run(method: str, sims: list[Any], settings: MethodSettings) -> Any:
    """Reconstruct the slices of ``sims`` (one geometry) in one call: stacked as (B, 1, n_views, det)."""
    if len(sims) == 1:
        return pipeline.run_method(method, sims[0], settings)
    stacked = dataclasses.replace(sims[0], sinogram=torch.stack([s.sinogram for s in sims])[:, None])
    return pipeline.run_method(method, stacked, settings)


def compute(payload: dict[str, Any]) -> dict[str, Any]:
    """Reconstruct and score the unit's slices. Never raises for ordinary errors: returns ``ok: False``."""
    try:
        device = parse_device(payload["device"])
        settings = MethodSettings(iterations=payload["iterations"], preset=payload["preset"], seed=payload["seed"],
                                  device=device, variant=tuple(payload["variant"]))
        hu = np.array(payload["hu"], dtype=np.float32)  # writable copy (Ray hands out read-only arrays)
        spacing = tuple(payload["spacing"])
        sims = []
        for index, image in zip(payload["slices"], hu, strict=True):
            scan = ScanSettings(views=payload["views"], photons=payload["photons"], seed=payload["seed"] + int(index))
            sims.append(pipeline.simulate(data.CTSlice(hu=image, spacing=spacing), scan))
        batch = payload["batch_size"] or auto_batch_size(payload["method"], hu.shape[1:], device)
        images = np.empty_like(hu)
        seconds: list[float] = []
        used_device = device
        i = 0
        while i < len(sims):
            b = min(batch, len(sims) - i)
            try:
                recon = _run(payload["method"], sims[i:i + b], settings)
            except torch.cuda.OutOfMemoryError:
                if b == 1:
                    raise
                batch = max(1, b // 2)
                torch.cuda.empty_cache()
                continue
            images[i:i + b] = np.asarray(recon.image_hu, dtype=np.float32).reshape(b, *hu.shape[1:])
            seconds += [float(recon.seconds) / b] * b
            used_device = recon.device
            i += b
        rows = []
        for index, image, simulation, secs in zip(payload["slices"], images, sims, seconds, strict=True):
            m = pipeline.score(image, simulation)
            rows.append({"slice": int(index), "psnr": round(m["psnr"], 4), "ssim": round(m["ssim"], 5),
                         "rmse_hu": round(m["rmse_hu"], 3), "seconds": round(secs, 3), "device": str(used_device)})
        return {"ok": True, "images": images, "rows": rows, "batch_size": batch}
    except Exception as error:  # one bad unit must not stop the batch
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


# ----------------------------------------------------------------------------------------------------
# Output store
# ----------------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload, indent=2, default=str) + "\n").encode()


def contact_sheet(references: np.ndarray, images: np.ndarray, slices: tuple[int, ...], label: str,
                  max_width: int = 2048) -> Any:
    """A grid of (reference | reconstruction) pairs, one per slice, at most ``max_width`` pixels wide."""
    cells = [outputs.comparison_image({f"#{s}": ref, label: img}) for s, ref, img in
             zip(slices, references, images, strict=True)]
    cols = max(1, math.ceil(math.sqrt(len(cells))))
    rows = math.ceil(len(cells) / cols)
    cw, ch = cells[0].width, cells[0].height
    scale = min(1.0, max_width / (cols * cw))
    cw, ch = max(1, int(cw * scale)), max(1, int(ch * scale))
    sheet = Image.new("RGB", (cols * cw, rows * ch))
    for n, cell in enumerate(cells):
        if scale < 1.0:
            cell = cell.resize((cw, ch), Image.BILINEAR)
        sheet.paste(cell, ((n % cols) * cw, (n // cols) * ch))
    return sheet


@dataclass
class Store:
    """OUT_DIR: derived series, contact sheets, markers and the rebuilt tables."""

    root: Path
    in_root: Path
    settings: BatchSettings
    _hashes: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    def marker(self, unit: Unit, kind: str = "done") -> Path:
        return self.state / kind / f"{unit.id}.json"

    def prepare(self, units: list[Unit]) -> None:
        """Create the folders and drop what a killed run left half-done (staging, temporary files)."""
        for sub in ("done", "failed", "staging", "tmp"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        for unit in units:
            shutil.rmtree(self.state / "staging" / unit.id, ignore_errors=True)
        with self._lock():
            for temporary in (self.state / "tmp").glob("*.part"):
                pid = temporary.name.rsplit(".", 2)[-2]
                if not pid.isdigit() or not _pid_alive(int(pid)):
                    temporary.unlink(missing_ok=True)

    def _write(self, path: Path, payload: bytes) -> None:
        """Atomic write whose temporary file lives in the hidden state folder, never next to ``path``."""
        temporary = self.state / "tmp" / f"{path.name}.{os.urandom(4).hex()}.{os.getpid()}.part"
        try:
            with open(temporary, "wb") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    # -- manifest --------------------------------------------------------------------------------
    def input_hashes(self, series: Any) -> dict[str, str]:
        """SHA-256 of every file the series was read from, keyed by path relative to IN_DIR."""
        base = self.in_root if self.in_root.is_dir() else self.in_root.parent
        result = {}
        for source in sorted(set(series.sources)):
            path = _source_file(source, self.in_root)
            key = str(path)
            if key not in self._hashes:
                self._hashes[key] = _sha256(path)
            try:
                rel = path.resolve().relative_to(base.resolve()).as_posix()
            except ValueError:
                rel = path.name
            result[rel] = self._hashes[key]
        return result

    def fingerprint(self, unit: Unit, series: Any) -> str:
        s = self.settings
        payload = {"manifest": MANIFEST_VERSION, "unit": unit.key, "slices": list(unit.slices),
                   "preset": None if unit.method in registry.CLASSICAL_METHODS else s.preset,
                   "iterations": s.iterations, "photons": s.photons, "seed": s.seed, "anonymize": s.anonymize,
                   "inputs": self.input_hashes(series)}
        variant = self.variant(unit)
        if variant not in (None, registry.PAPER_VARIANT):  # keyless for "paper": runs from before --variant stay done
            payload["variant"] = variant
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def variant(self, unit: Unit) -> str | None:
        """The unit's fit variants as recorded in its rows ("ramp_loss", "fbp_init+ramp_loss", "paper"),
        None for the classical methods."""
        return None if unit.method in registry.CLASSICAL_METHODS else "+".join(self.settings.variant)

    def is_done(self, unit: Unit, fingerprint: str) -> bool:
        try:
            record = json.loads(self.marker(unit).read_text())
        except (OSError, ValueError):
            return False
        if record.get("fingerprint") != fingerprint:
            return False
        return all((self.root / rel).exists() for rel in record.get("outputs", []))

    # -- commit ----------------------------------------------------------------------------------
    def commit(self, unit: Unit, series: Any, result: dict[str, Any], fingerprint: str,
               run_version: str) -> list[dict[str, Any]]:
        """Write the unit's files via staging + rename, then its done-marker; returns its metrics rows."""
        staging = self.state / "staging" / unit.id
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        idx = list(unit.slices)
        reference = data.CTSeries(
            hu=series.hu[idx], spacing=series.spacing, positions=series.positions[idx], uid=series.uid,
            description=series.description, datasets=[series.datasets[i] for i in idx],
            frames=[series.frames[i] for i in idx], sources=[series.sources[i] for i in idx], meta=series.meta)
        description = f"{unit.method.upper()} {unit.views} views"
        data.write_series(staging / "dicom", result["images"], reference, description,
                          anonymize=self.settings.anonymize)
        sheet = contact_sheet(series.hu[idx], result["images"], unit.slices, unit.method)
        outputs.write_png(staging / "sheet.png", sheet)

        final_dir = self.root / unit.out_rel
        final_png = self.root / f"{unit.out_rel}.png"
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.rename(staging / "dicom", final_dir)
        os.replace(staging / "sheet.png", final_png)
        shutil.rmtree(staging, ignore_errors=True)

        series_id = unit.series_uid
        if self.settings.anonymize:  # the source UID would link the table back to the patient's study
            series_id = "anon-" + hashlib.sha256(unit.series_uid.encode()).hexdigest()[:16]
        rows = [{"series": series_id, "slice": r["slice"], "views": unit.views, "method": unit.method,
                 "variant": self.variant(unit), "psnr": r["psnr"], "ssim": r["ssim"], "rmse_hu": r["rmse_hu"],
                 "seconds": r["seconds"], "device": r["device"], "version": run_version} for r in result["rows"]]
        record = {"unit": dataclasses.asdict(unit), "key": unit.key, "fingerprint": fingerprint,
                  "inputs": self.input_hashes(series), "settings": dataclasses.asdict(self.settings),
                  "outputs": [unit.out_rel, f"{unit.out_rel}.png"], "rows": rows,
                  "batch_size": result.get("batch_size"), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._write(self.marker(unit), _json_bytes(record))
        self.marker(unit, "failed").unlink(missing_ok=True)
        return rows

    def fail(self, unit: Unit, file: str, reason: str) -> dict[str, Any]:
        record = {"kind": "unit", "file": file, "series": unit.series_uid, "views": unit.views,
                  "method": unit.method, "output": unit.out_rel, "reason": reason}
        self._write(self.marker(unit, "failed"), _json_bytes(record))
        return record

    # -- tables ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        path = self.state / "lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
            except (ImportError, OSError):  # pragma: no cover - no advisory locks here
                pass
            yield

    def _records(self, kind: str) -> list[dict[str, Any]]:
        records = []
        for path in sorted((self.state / kind).glob("*.json")):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return records

    def rows(self) -> list[dict[str, Any]]:
        done = sorted(self._records("done"), key=lambda r: r.get("key", ""))
        return [row for record in done for row in record.get("rows", [])]

    def rebuild(self, input_failures: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
        """Rewrite metrics.csv, metrics.jsonl, failures.jsonl and summary.json from the markers."""
        with self._lock():
            rows = self.rows()
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            self._write(self.root / "metrics.csv", text.getvalue().encode())
            self._write(self.root / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
            failures = list(input_failures) + self._records("failed")
            self._write(self.root / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures).encode())
            summary = dict(extra, groups=summarize(rows), rows=len(rows), failures=len(failures),
                           units_done=len(self._records("done")))
            self._write(self.root / "summary.json", _json_bytes(summary))
        return summary


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 5),
            "sd": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd of each metric per (method, views)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], int(row["views"])), []).append(row)
    return [{"method": method, "views": views, "slices": len(members),
             **{k: _mean_sd([float(r[k]) for r in members]) for k in ("psnr", "ssim", "rmse_hu", "seconds")}}
            for (method, views), members in sorted(groups.items())]
