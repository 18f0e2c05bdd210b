"""Blinded reader study: random labels for methods and the ratings CSV (pure functions)."""

from __future__ import annotations

import csv
import hashlib
import io
import random
import string
from collections.abc import Mapping, Sequence

QUALITY_HELP = "Diagnostic quality: 1 = non-diagnostic, 5 = excellent"
ARTIFACT_HELP = "Artifacts (streaks, noise, blur): 1 = severe, 5 = none"
CSV_COLUMNS = ("study", "reader", "label", "position", "rank", "quality", "artifacts", "comment", "method")


def blind_labels(methods: Sequence[str], seed: int) -> dict[str, str]:
    """label ("A", "B", ...) -> method, in a random order fixed by ``seed`` (sorted first, so the order the
    methods were picked in leaks nothing)."""
    order = sorted(methods)
    random.Random(seed).shuffle(order)
    return {string.ascii_uppercase[i] if i < 26 else f"M{i + 1}": m for i, m in enumerate(order)}


def reading_order(labels: Sequence[str], study: str, reader: str) -> list[str]:
    """The order a reader sees the labelled images in: shuffled per (study, reader), so order effects
    (the first image read, the one next to the reference) do not fall on the same method for every reader;
    the same reader gets the same order again on a rerun of the page."""
    order = sorted(labels)
    seed = int.from_bytes(hashlib.sha256(f"{study}\0{reader.strip().lower()}".encode()).digest()[:8], "big")
    random.Random(seed).shuffle(order)
    return order


def widget_key(kind: str, study: str, reader: str, label: str) -> str:
    """Streamlit key of a reader-study widget ("q" quality, "a" artifacts, "r" rank, "c" comment): one set
    per (study, reader, label), so the next reader starts blank."""
    tag = hashlib.sha256(reader.strip().lower().encode()).hexdigest()[:8]
    return f"{kind}_{study}_{tag}_{label}"


def ranks_valid(ranks: Mapping[str, int | None]) -> bool:
    """Whether every image has a rank and the ranks are a permutation of 1..n."""
    values = list(ranks.values())
    return None not in values and sorted(values) == list(range(1, len(ranks) + 1))


def ratings_csv(study: str, reader: str, labels: Mapping[str, str], ratings: Mapping[str, Mapping[str, object]],
                revealed: bool, order: Sequence[str] | None = None) -> bytes:
    """The ratings as CSV (UTF-8): one row per label, ``position`` the 1-based place it was shown at
    (``order``), an unset rank empty. The ``method`` column is filled only once the study is revealed."""
    position = {lab: i + 1 for i, lab in enumerate(order or [])}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for lab in sorted(labels):
        rating = ratings.get(lab, {})
        rank = rating.get("rank")
        writer.writerow({"study": study, "reader": reader, "label": lab, "position": position.get(lab, ""),
                         "rank": "" if rank is None else rank,
                         "quality": rating.get("quality", ""), "artifacts": rating.get("artifacts", ""),
                         "comment": rating.get("comment", ""), "method": labels[lab] if revealed else ""})
    return buffer.getvalue().encode("utf-8")
