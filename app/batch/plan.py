"""Planning of ``sparsect batch``: option parsing, batch settings and the work units.

A work unit is (series, chosen slices, views, method). Its outputs and markers live in the output store
(:mod:`sparsect.app.batch.store`); :mod:`sparsect.app.batch.work` computes it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsect.app import display
from sparsect.app.scans import MIN_IMAGE_SIZE
from sparsect.app.settings import recommended_variants
from sparsect.reconstruct import registry

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


def check_size_and_window(size: int | None, window: str) -> None:
    """``--size`` and ``--window`` as ``sparsect reconstruct`` checks them (the same one-line errors)."""
    if size is not None and size < MIN_IMAGE_SIZE:
        raise PlanError(f"--size must be at least {MIN_IMAGE_SIZE} pixels, got {size}")
    display.check_window(window, auto=False)  # one sheet per unit: no per-series choice


@dataclass(frozen=True)
class BatchSettings:
    """Everything that decides a unit's outputs (device and batch size do not). ``variant``: the networks'
    fit variants in the canonical form of :func:`sparsect.app.settings.parse_variants`; ``size``: the working
    grid (None: each slice's own); ``window``: the display window of the contact sheets, the only setting
    left out of a unit's fingerprint (it changes pictures, not results)."""

    views: tuple[int, ...] = (60,)
    methods: tuple[str, ...] = registry.DEFAULT_METHODS
    slices: str = "all"
    preset: str = "preview"
    variant: tuple[str, ...] = field(default_factory=recommended_variants)
    iterations: int | None = None
    photons: float | None = None
    seed: int = 0
    anonymize: bool = False
    simulation: str = "honest"
    size: int | None = None
    window: str = "full"


#: Why :func:`sparsect.data.scan` passed over a file that is simply not a CT input (a notes.txt, an MR series,
#: a DICOMDIR, a scout, a duplicate): such files are *skipped*; any other reason (truncated, undecodable,
#: unreadable) is a *failure*.
_NOT_CT = re.compile(r"^(not a DICOM file|DICOMDIR|localizer|every frame is a localizer|duplicate of"
                     r"|CT object without pixel data)"
                     r"|is not CT$")


def split_inputs(passed_over: list[tuple[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The (file, reason) pairs of the files a scan did not use, as records: (skipped, failed)."""
    skipped, failed = [], []
    for name, reason in passed_over:
        if _NOT_CT.search(reason):
            skipped.append({"kind": "skipped", "file": name, "reason": reason})
        else:
            failed.append({"kind": "input", "file": name, "reason": reason})
    return skipped, failed


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
