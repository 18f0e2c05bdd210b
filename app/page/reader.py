"""Blinded reader study: random labels for methods and the ratings CSV (pure functions)."""

from __future__ import annotations

import csv
import io
import random
import string
from collections.abc import Mapping, Sequence

QUALITY_HELP = "Diagnostic quality: 1 = non-diagnostic, 5 = excellent"
ARTIFACT_HELP = "Artifacts (streaks, noise, blur): 1 = severe, 5 = none"
CSV_COLUMNS = ("study", "reader", "label", "rank", "quality", "artifacts", "comment", "method")


def blind_labels(methods: Sequence[str], seed: int) -> dict[str, str]:
    """label ("A", "B", ...) -> method, in a random order fixed by ``seed`` (sorted first, so the order the
    methods were picked in leaks nothing)."""
    order = sorted(methods)
    random.Random(seed).shuffle(order)
    return {string.ascii_uppercase[i] if i < 26 else f"M{i + 1}": m for i, m in enumerate(order)}


def ranks_valid(ranks: Mapping[str, int]) -> bool:
    """Whether the ranks are a permutation of 1..n."""
    return sorted(ranks.values()) == list(range(1, len(ranks) + 1))


def ratings_csv(study: str, reader: str, labels: Mapping[str, str], ratings: Mapping[str, Mapping[str, object]],
                revealed: bool) -> bytes:
    """The ratings as CSV (UTF-8). The ``method`` column is filled only once the study is revealed."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for lab in sorted(labels):
        rating = ratings.get(lab, {})
        writer.writerow({"study": study, "reader": reader, "label": lab, "rank": rating.get("rank", ""),
                         "quality": rating.get("quality", ""), "artifacts": rating.get("artifacts", ""),
                         "comment": rating.get("comment", ""), "method": labels[lab] if revealed else ""})
    return buffer.getvalue().encode("utf-8")
