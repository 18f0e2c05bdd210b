"""Writing results to disk atomically: PNG images, NPZ arrays and a JSON summary; the pictures of the
data-consistency and uncertainty maps (:func:`trust_maps`) that the page, ``--out`` and batch jobs share."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sparsect.app.settings import InputError
from sparsect.data.atomic import atomic_write
from sparsect.reconstruct import metrics

#: Labels of the trust maps in pictures and the NPZ key suffix of each (``<method>_consistency_hu``).
CONSISTENCY, UNCERTAINTY = "consistency", "uncertainty"


def to_display(image_hu: np.ndarray, window: metrics.WindowLike = "full") -> np.ndarray:
    """uint8 (H, W) grey levels of an HU image under a display window (name or (low, high) HU)."""
    return np.round(metrics.normalize(image_hu, window) * 255).astype(np.uint8)


def labelled_row(tiles: Mapping[str, Image.Image], scale: int = 1) -> Image.Image:
    """The tiles side by side, each labelled in its top-left corner, optionally magnified ``scale`` times."""
    sheet = Image.new("RGB", (sum(t.width * scale for t in tiles.values()),
                              max(t.height * scale for t in tiles.values())))
    x = 0
    for label, tile in tiles.items():
        if scale != 1:
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
        ImageDraw.Draw(tile).text((4, 4), label, fill=(255, 210, 0))
        sheet.paste(tile, (x, 0))
        x += tile.width
    return sheet


def comparison_image(images_hu: Mapping[str, np.ndarray], window: metrics.WindowLike = "full",
                     scale: int = 1) -> Image.Image:
    """A row of labelled tiles (one per named HU image, all the same size) under one shared window."""
    return labelled_row({label: Image.fromarray(to_display(image, window)).convert("RGB")
                          for label, image in images_hu.items()}, scale)


# Diverging colour map (blue - white - red) as control points on [0, 1].
_DIVERGING = np.array([[0.02, 0.19, 0.38], [0.26, 0.58, 0.76], [0.97, 0.97, 0.97], [0.84, 0.38, 0.30],
                       [0.40, 0.0, 0.12]])


def diverging(values: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) of values in [-1, 1] under a blue-white-red map (white at 0)."""
    t = (np.clip(values, -1.0, 1.0) + 1.0) / 2.0 * (len(_DIVERGING) - 1)
    low = np.clip(np.floor(t).astype(int), 0, len(_DIVERGING) - 2)
    frac = (t - low)[..., None]
    rgb = _DIVERGING[low] * (1 - frac) + _DIVERGING[low + 1] * frac
    return np.round(rgb * 255).astype(np.uint8)


def coloured(values_hu: np.ndarray, limit: float, signed: bool = True) -> np.ndarray:
    """uint8 RGB (H, W, 3) of an HU map: blue-white-red over [-limit, +limit] (``signed``), else white (0) to
    red over [0, limit] (a spread, never negative)."""
    scaled = np.asarray(values_hu, dtype=np.float64) / limit
    return diverging(scaled if signed else np.clip(scaled, 0.0, 1.0))


def difference_limit(differences: Sequence[np.ndarray], percentile: float = 99.0) -> float:
    """A shared symmetric colour limit (HU) for maps: the largest per-image percentile of |d| inside the
    reconstruction circle (corners outside it are not measured), rounded up to a readable step."""
    if not differences:
        return 100.0
    mask = metrics.circle_mask(differences[0].shape)
    value = max(float(np.percentile(np.abs(d[mask]), percentile)) for d in differences)
    value = max(value, 1.0)
    step = 10 ** np.floor(np.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * step:
            return float(m * step)
    return float(10 * step)


def map_tiles(maps_hu: Mapping[str, np.ndarray], signed: bool = True) -> dict[str, Image.Image]:
    """The HU maps as RGB tiles under one shared colour scale (:func:`coloured` up to :func:`difference_limit`
    of them), keyed by their names with the scale added ("fbp +/-50 HU")."""
    limit = difference_limit(list(maps_hu.values()))
    span = f"+/-{limit:g}" if signed else f"0-{limit:g}"
    return {f"{label} {span} HU": Image.fromarray(coloured(values, limit, signed)) for label, values in maps_hu.items()}


def map_image(maps_hu: Mapping[str, np.ndarray], signed: bool = True, scale: int = 1) -> Image.Image:
    """A row of labelled HU maps under one shared colour scale (:func:`map_tiles`)."""
    return labelled_row(map_tiles(maps_hu, signed), scale)


def trust_maps(outcomes: Sequence[Any], name: Callable[[Any], str] = attrgetter("method")
               ) -> dict[str, dict[str, np.ndarray]]:
    """The maps that say where to trust each image: ``{"consistency": {name: map}, "uncertainty": {...}}`` of
    run outcomes (:class:`sparsect.app.run.Outcome`), keyed by ``name(outcome)``.

    consistency : every outcome's data-consistency map (HU, (H, W); see
        :func:`reconstruct.consistency.data_consistency_hu`).
    uncertainty : the per-pixel spread (HU) of the outcomes fitted as a seed ensemble; empty if none.
    """
    return {CONSISTENCY: {name(o): o.consistency_hu for o in outcomes},
            UNCERTAINTY: {name(o): o.uncertainty_hu for o in outcomes if o.uncertainty_hu is not None}}


def trust_arrays(maps: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """:func:`trust_maps` as NPZ entries: ``<name>_consistency_hu``, ``<name>_uncertainty_hu``."""
    return {f"{name}_{kind}_hu": values for kind, named in maps.items() for name, values in named.items()}


def write_trust_pngs(folder: Path, maps: Mapping[str, Mapping[str, np.ndarray]], prefix: str = "") -> list[Path]:
    """``<prefix>consistency.png`` (signed scale) and, when any map is there, ``<prefix>uncertainty.png``
    (0 to limit) in ``folder``, one labelled tile per (H, W) map."""
    written = []
    for kind, named in maps.items():
        if named:
            written.append(write_png(folder / f"{prefix}{kind}.png", map_image(named, signed=kind == CONSISTENCY)))
    return written


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """Compressed NPZ of named arrays."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def write_png(path: str | os.PathLike, image: Image.Image) -> Path:
    """Save ``image`` as PNG atomically."""
    return atomic_write(path, png_bytes(image))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Save named arrays as a compressed NPZ atomically."""
    return atomic_write(path, npz_bytes(arrays))


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Save ``payload`` as indented JSON atomically."""
    return atomic_write(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


class Staging:
    """A staging folder beside an output folder ``out``: results are written there, then moved into ``out``
    (:meth:`commit`), so an interrupted or failed run leaves ``out`` as it was.

    Created before any work starts, it also checks ``out``: it must not be a file, its parent must be
    writable, and none of the ``planned`` outputs (relative path -> "file" or "folder") may stand there as
    the other kind. Problems raise :class:`sparsect.app.settings.InputError`.
    """

    def __init__(self, out: str | os.PathLike, planned: Mapping[str, str]) -> None:
        self.out, self.planned = Path(out), dict(planned)
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"--out {str(self.out)!r} is a file; give a folder")
        for relative, kind in self.planned.items():
            target = self.out / relative
            if target.exists() and target.is_dir() != (kind == "folder"):
                what = "a folder" if target.is_dir() else "a file"
                raise InputError(f"--out: {str(target)!r} is {what}, where the output {kind} {relative!r} must go")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=self.out.parent))
        except OSError as error:
            raise InputError(f"--out: cannot write to {str(self.out.parent)!r}: {error.strerror or error}") from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.folder, 0o777 & ~umask)  # mkdtemp makes it private; the output folder follows the umask

    def commit(self) -> list[Path]:
        """Move the staged outputs into ``out``: planned folders replace their old copies whole, files are
        renamed over old ones, and a planned output this run did not produce (an uncertainty map without an
        ensemble, a reference series without a reference) is removed if an earlier run left one, so that
        nothing in ``out`` describes another run. Files ``out`` holds that are not planned outputs stay.
        Returns the files now in place."""
        self.out.mkdir(exist_ok=True)
        moved: list[Path] = []
        for relative, kind in sorted(self.planned.items()):
            staged, target = self.folder / relative, self.out / relative
            if kind == "folder" and any(other.startswith(relative + "/") for other in self.planned):
                continue  # a parent folder whose planned children move one by one
            old = self.folder / f".old-{relative.replace('/', '_')}"
            if not staged.exists():
                if target.exists():
                    os.replace(target, old)  # stale: from an earlier run; discard() deletes it
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "folder" and target.exists():
                os.replace(target, old)
            os.replace(staged, target)
            moved += [target] if kind == "file" else sorted(p for p in target.rglob("*") if p.is_file())
        return moved

    def discard(self) -> None:
        """Remove the staging folder and whatever is left in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
