"""The restartable output store of ``sparsect batch`` (OUT_DIR): derived series, contact sheets, markers, tables.

A unit's outputs are one derived DICOM series (``OUT/<input folder>/<method>_<views>v/``), a PNG contact
sheet next to it (``<method>_<views>v.png``) and where to trust it: ``<method>_<views>v_maps.npz`` (the
slices' data-consistency maps ``consistency_hu``, (n_slices, H, W) in HU, with ``slices``; and
``uncertainty_hu`` for seed ensembles) with their pictures ``<method>_<views>v_consistency.png`` (and
``..._uncertainty.png``).

Crash safety (SIGKILL at any moment):

1. the unit's files are written under ``OUT/.sparsect/staging/<id>/`` and then renamed into place;
2. only then is its done-marker ``OUT/.sparsect/done/<id>.json`` written (atomically); it holds the unit's
   metrics rows, the settings and the SHA-256 of every input file it read (the manifest);
3. ``metrics.csv``, ``metrics.jsonl``, ``failures.jsonl`` and ``summary.json`` are rebuilt from the markers
   and written atomically (under a file lock, for shards sharing one OUT_DIR).

A unit counts as done only when its marker exists, matches the current settings and input hashes and its
output files exist, so a rerun redoes exactly the unfinished units and never duplicates a row.

One job at a time: :meth:`Store.acquire` takes an exclusive ``flock`` on ``.sparsect/locks/shard-K-of-N.lock``
(unsharded jobs are shard 1/1) and refuses when that shard, or any shard of another split N, is held by a
live process, so only disjoint shards of one split share OUT_DIR. The kernel drops the lock when the holder
exits, also after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import io
import json
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

from sparsect import data
from sparsect.app import outputs, records
from sparsect.app.batch import sheets
from sparsect.app.batch.plan import BatchSettings, Unit
from sparsect.data.atomic import PART_SUFFIX, atomic_write, temporary_owner
from sparsect.reconstruct import registry

MANIFEST_VERSION = 1
STATE_DIR = ".sparsect"
#: A row of ``metrics.csv``/``metrics.jsonl``: the slice's record (:data:`sparsect.app.records.RECORD_FIELDS`), its
#: input the series' folder under IN_DIR (None with ``--anonymize``) and its series the SeriesInstanceUID (a keyed
#: pseudonym with ``--anonymize``).
COLUMNS = records.RECORD_FIELDS


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


class OutDirBusy(Exception):
    """OUT_DIR is being written by another ``sparsect batch`` (the same or an overlapping shard)."""


_SHARD_LOCK = re.compile(r"^shard-(\d+)-of-(\d+)\.lock$")


def _try_flock(handle: Any) -> bool:
    """Take an exclusive flock without waiting; False when another open file holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""


@dataclass
class Store:
    """OUT_DIR: derived series, contact sheets, markers and the rebuilt tables."""

    root: Path
    in_root: Path
    settings: BatchSettings
    _hashes: dict[str, str] = field(default_factory=dict)
    _attempts: dict[str, str] = field(default_factory=dict)
    _held: Any = None
    _anonymizer: Any = None

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    def marker(self, unit: Unit, kind: str = "done") -> Path:
        return self.state / kind / f"{unit.id}.json"

    def acquire(self, k: int = 1, n: int = 1) -> None:
        """Lock OUT_DIR for shard ``k`` of ``n`` (1/1: the whole job) until :meth:`release` or process exit.

        Raises :class:`OutDirBusy` when a live process holds the same shard or a shard of another split.
        """
        locks = self.state / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with self._lock():  # one process at a time inspects and takes shard locks
            for other in sorted(locks.iterdir()):
                match = _SHARD_LOCK.match(other.name)
                if not match or int(match.group(2)) == n:
                    continue
                with open(other, "a+") as probe:
                    if not _try_flock(probe):
                        raise OutDirBusy(f"OUT_DIR {str(self.root)!r} is in use by another sparsect batch "
                                         f"(shard {match.group(1)}/{match.group(2)}{_holder(other)}); shards "
                                         f"sharing an OUT_DIR must split it the same way (--shard K/{n})")
            mine = locks / f"shard-{k}-of-{n}.lock"
            handle = open(mine, "a+")  # noqa: SIM115 - held until release() or exit
            if not _try_flock(handle):
                handle.close()
                what = "the same shard" if n > 1 else "the same job"
                raise OutDirBusy(f"OUT_DIR {str(self.root)!r} is in use by another sparsect batch running "
                                 f"{what}{_holder(mine)}; wait for it to finish (or stop it) and run again")
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            handle.flush()
            self._held = handle

    def release(self) -> None:
        """Drop the lock taken by :meth:`acquire` (exiting the process does the same)."""
        if self._held is not None:
            self._held.close()
            self._held = None

    def prepare(self, units: list[Unit]) -> None:
        """Create the folders and drop what a killed run left half-done (staging, temporary files)."""
        for sub in ("done", "failed", "staging", "tmp"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        for unit in units:
            shutil.rmtree(self.state / "staging" / unit.id, ignore_errors=True)
        with self._lock():
            for temporary in (self.state / "tmp").glob(f"*{PART_SUFFIX}"):
                pid = temporary_owner(temporary)
                if pid is None or not _pid_alive(pid):
                    temporary.unlink(missing_ok=True)

    def _write(self, path: Path, payload: bytes) -> None:
        """Atomic write whose temporary file lives in the hidden state folder, never next to ``path``."""
        atomic_write(path, payload, temp_dir=self.state / "tmp")

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
                   "preset": s.preset if "preset" in registry.method(unit.method).depends_on else None,
                   "iterations": s.iterations, "photons": s.photons, "seed": s.seed, "anonymize": s.anonymize,
                   "inputs": self.input_hashes(series)}
        variant = self.variant(unit)
        if variant not in (None, registry.PAPER_VARIANT):  # keyless for "paper": runs from before --variant stay done
            payload["variant"] = variant
        if s.simulation != "same-grid":  # keyless for same-grid, what runs from before --simulation simulated
            payload["simulation"] = s.simulation
        if s.size is not None:  # keyless without --size: runs from before --size stay done
            payload["size"] = s.size
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        self._attempts[unit.id] = digest  # a later failure of this unit is recorded with it
        return digest

    def variant(self, unit: Unit) -> str | None:
        """The unit's fit variants as recorded in its rows ("ramp_loss", "fbp_init+ramp_loss", "paper"; "recommended"
        resolved to the network's own set), None for the classical methods."""
        if not registry.method(unit.method).is_network:
            return None
        return "+".join(registry.resolve_variants(unit.method, self.settings.variant))

    def is_done(self, unit: Unit, fingerprint: str) -> bool:
        return self._done_with(self.marker(unit), fingerprint)

    def _done_with(self, marker: Path, fingerprint: str | None) -> bool:
        """Whether the done-marker at ``marker`` exists, has ``fingerprint`` (None: any) and its outputs exist."""
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            return False
        if fingerprint is not None and record.get("fingerprint") != fingerprint:
            return False
        return all((self.root / rel).exists() for rel in record.get("outputs", []))

    # -- de-identification -----------------------------------------------------------------------
    def anonymizer(self) -> Any:
        """The job's :class:`data.Anonymizer`, keyed by ``.sparsect/pseudonym.key`` (one identity per source
        study across methods, view counts, shards and reruns), or None without ``--anonymize``."""
        if not self.settings.anonymize:
            return None
        if self._anonymizer is None:
            self._anonymizer = data.Anonymizer.from_key_file(self.state / "pseudonym.key")
        return self._anonymizer

    def series_id(self, series_uid: str) -> str:
        """The series as named in the tables: its UID, or a keyed pseudonym when anonymizing."""
        anonymizer = self.anonymizer()
        return series_uid if anonymizer is None else "anon-" + anonymizer.pseudonym("series", series_uid, 16).lower()

    def series_number(self, unit: Unit, series: Any) -> int:
        """SeriesNumber of the unit's derived series: 1001, 1002, ... in order of first use within its source
        study, kept in ``.sparsect/series_numbers.json`` so every derived series of a study has its own."""
        study = str(series.datasets[0].get("StudyInstanceUID", "")) if series.datasets else ""
        path = self.state / "series_numbers.json"
        with self._lock():
            try:
                table = json.loads(path.read_text())
            except (OSError, ValueError):
                table = {}
            numbers = table.setdefault(study, {})
            key = f"{unit.series_uid}|{unit.name}"
            if key not in numbers:
                numbers[key] = max(numbers.values(), default=1000) + 1
                self._write(path, _json_bytes(table))
            return int(numbers[key])

    # -- commit ----------------------------------------------------------------------------------
    def commit(self, unit: Unit, series: Any, result: dict[str, Any], fingerprint: str) -> list[dict[str, Any]]:
        """Write the unit's files via staging + rename, then its done-marker; returns its metrics rows."""
        staging = self.state / "staging" / unit.id
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        idx = list(unit.slices)
        reference = data.CTSeries(
            hu=series.hu[idx], spacing=series.spacing, positions=series.positions[idx], uid=series.uid,
            description=series.description, datasets=[series.datasets[i] for i in idx],
            frames=[series.frames[i] for i in idx], sources=[series.sources[i] for i in idx], meta=series.meta)
        description = data.dicom_write.Provenance(registry.label(unit.method), unit.views)  # same_study: --push
        data.write_series(staging / "dicom", result["images"], reference, description, same_study=True,
                          anonymize=self.anonymizer() or False, series_number=self.series_number(unit, series))
        references = result.get("references")  # the slices on the --size working grid, when one was given
        sheet = sheets.contact_sheet(series.hu[idx] if references is None else references, result["images"],
                                     unit.slices, unit.method, window=self.settings.window)
        outputs.write_png(staging / "sheet.png", sheet)
        files = {"sheet.png": f"{unit.out_rel}.png"} | self._stage_maps(staging, unit, result)

        final_dir = self.root / unit.out_rel
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.rename(staging / "dicom", final_dir)
        for staged, final in files.items():
            os.replace(staging / staged, self.root / final)
        shutil.rmtree(staging, ignore_errors=True)

        series_id = self.series_id(unit.series_uid)
        named = {"series": series_id, "input": None if self.settings.anonymize else unit.rel_dir}
        rows = [{key: named.get(key, r[key]) for key in COLUMNS} for r in result["rows"]]
        record = {"unit": dataclasses.asdict(unit), "key": unit.key, "fingerprint": fingerprint,
                  "inputs": self.input_hashes(series), "settings": dataclasses.asdict(self.settings),
                  "outputs": [unit.out_rel, *files.values()], "rows": rows,
                  "batch_size": result.get("batch_size"), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._write(self.marker(unit), _json_bytes(record))
        self.marker(unit, "failed").unlink(missing_ok=True)
        return rows

    @staticmethod
    def _stage_maps(staging: Path, unit: Unit, result: dict[str, Any]) -> dict[str, str]:
        """Stage the unit's trust maps (NPZ and PNGs); staged name -> final path relative to OUT_DIR."""
        maps = {outputs.CONSISTENCY: result["consistency"]}
        if result.get("uncertainty") is not None:
            maps[outputs.UNCERTAINTY] = result["uncertainty"]
        outputs.write_npz(staging / "maps.npz", {"slices": np.asarray(unit.slices),
                                                 **{f"{kind}_hu": values for kind, values in maps.items()}})
        files = {"maps.npz": f"{unit.out_rel}_maps.npz"}
        for kind, values in maps.items():
            picture = sheets.map_sheet(values, unit.slices, kind == outputs.CONSISTENCY)
            outputs.write_png(staging / f"{kind}.png", picture)
            files[f"{kind}.png"] = f"{unit.out_rel}_{kind}.png"
        return files

    def fail(self, unit: Unit, file: str, reason: str) -> dict[str, Any]:
        """Record that the unit's current attempt failed (cleared when that attempt later succeeds)."""
        record = {"kind": "unit", "file": file, "series": self.series_id(unit.series_uid), "views": unit.views,
                  "method": unit.method, "output": unit.out_rel, "reason": reason,
                  "fingerprint": self._attempts.get(unit.id), "failed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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

    def failures(self) -> list[dict[str, Any]]:
        """Failed units that are still failed: a failure whose unit has since been done with the same
        fingerprint (settings and inputs) is history, not state."""
        current = []
        for path in sorted((self.state / "failed").glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not self._done_with(self.state / "done" / path.name, record.get("fingerprint")):
                current.append({k: v for k, v in record.items() if k != "fingerprint"})
        return current

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
            writer.writerows({key: records.csv_cell(value) for key, value in row.items()} for row in rows)
            self._write(self.root / "metrics.csv", text.getvalue().encode())
            self._write(self.root / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
            failures = list(input_failures) + self.failures()
            self._write(self.root / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures).encode())
            summary = dict(extra, groups=summarize(rows), rows=len(rows), failures=len(failures),
                           units_done=len(self._records("done")))
            self._write(self.root / "summary.json", _json_bytes(summary))
        return summary


def _mean_sd(values: list[float | None]) -> dict[str, float] | None:
    """Mean and sd of the values that are numbers (a score is None where it has none); None if there are none."""
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return None
    return {"mean": round(statistics.fmean(numbers), 5),
            "sd": round(statistics.stdev(numbers), 5) if len(numbers) > 1 else 0.0}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd of each metric per (method, views), with the method's fit in words (rows from before records
    named it have none)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], int(row["views"])), []).append(row)
    return [{"method": method, "fit": members[0].get("fit"), "views": views, "slices": len(members),
             **{k: _mean_sd([r.get(k) for r in members]) for k in (*records.SCORE_DIGITS, "seconds")}}
            for (method, views), members in sorted(groups.items())]
