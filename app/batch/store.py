"""The restartable output store of ``sparsect batch`` (OUT_DIR): derived series, contact sheets, markers, tables.

A unit's outputs are one derived DICOM series (``OUT/<input folder>/<method>_<views>v/``) and a PNG contact
sheet next to it (``<method>_<views>v.png``).

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
import hashlib
import io
import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsect.app.batch.work import BatchSettings, Unit

MANIFEST_VERSION = 1
STATE_DIR = ".sparsect"
COLUMNS = ("series", "slice", "views", "method", "variant", "psnr", "ssim", "rmse_hu", "seconds", "device",
           "version")


def _source_file(source: str, root: Path) -> Path:
    """The file on disk holding ``source`` (a path, or ``archive.zip/member`` for zip members)."""
    p = Path(source)
    while not p.is_file() and p != p.parent:
        p = p.parent
    return p if p.is_file() else root



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
    from PIL import Image

    from sparsect.app import outputs

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
        from sparsect.app.pipeline import CLASSICAL_METHODS, PAPER_VARIANT

        s = self.settings
        payload = {"manifest": MANIFEST_VERSION, "unit": unit.key, "slices": list(unit.slices),
                   "preset": None if unit.method in CLASSICAL_METHODS else s.preset,
                   "iterations": s.iterations, "photons": s.photons, "seed": s.seed, "anonymize": s.anonymize,
                   "inputs": self.input_hashes(series)}
        variant = self.variant(unit)
        if variant not in (None, PAPER_VARIANT):  # keyless for "paper": runs from before --variant stay done
            payload["variant"] = variant
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def variant(self, unit: Unit) -> str | None:
        """The unit's fit variants as recorded in its rows ("ramp_loss", "fbp_init+ramp_loss", "paper"),
        None for the classical methods."""
        from sparsect.app.pipeline import CLASSICAL_METHODS

        return None if unit.method in CLASSICAL_METHODS else "+".join(self.settings.variant)

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
        from sparsect import data
        from sparsect.app import outputs

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
                import fcntl

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
