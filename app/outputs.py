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
from PIL import Image, ImageDraw, ImageFont

from sparsect import __version__
from sparsect.app.settings import InputError
from sparsect.data.atomic import atomic_write
from sparsect.reconstruct import metrics

#: Labels of the trust maps in pictures and the NPZ key suffix of each (``<method>_consistency_hu``).
CONSISTENCY, UNCERTAINTY = "consistency", "uncertainty"


def to_display(image_hu: np.ndarray, window: metrics.WindowLike = "full") -> np.ndarray:
    """uint8 (H, W) grey levels of an HU image under a display window (name or (low, high) HU)."""
    return np.round(metrics.normalize(image_hu, window) * 255).astype(np.uint8)


def _font(tile_width: int) -> ImageFont.ImageFont:
    """A scalable font sized for a tile: about a twentieth of its width, at least 10 px."""
    return ImageFont.load_default(size=max(10, tile_width // 20))


def _text_box(tile: Image.Image, xy: tuple[int, int], text: str, colour: tuple[int, int, int]) -> None:
    """``text`` at ``xy`` on a dark backing box, readable on any grey level."""
    draw = ImageDraw.Draw(tile)
    font = _font(tile.width)
    left, top, right, bottom = draw.multiline_textbbox(xy, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.multiline_text(xy, text, font=font, fill=colour)


def labelled_row(tiles: Mapping[str, Image.Image], scale: int = 1,
                 captions: Mapping[str, str] | None = None) -> Image.Image:
    """The tiles side by side, each labelled in its top-left corner (and with its ``captions`` line, e.g. the
    scores, in the bottom-left), optionally magnified ``scale`` times."""
    sheet = Image.new("RGB", (sum(t.width * scale for t in tiles.values()),
                              max(t.height * scale for t in tiles.values())))
    x = 0
    for label, tile in tiles.items():
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST) if scale != 1 else tile.copy()
        _text_box(tile, (4, 4), label, (255, 210, 0))
        caption = (captions or {}).get(label)
        if caption:
            height = ImageDraw.Draw(tile).multiline_textbbox((0, 0), caption, font=_font(tile.width))[3]
            _text_box(tile, (4, tile.height - height - 6), caption, (235, 235, 235))
        sheet.paste(tile, (x, 0))
        x += tile.width
    return sheet


def comparison_image(images_hu: Mapping[str, np.ndarray], window: metrics.WindowLike = "full",
                     scale: int = 1, captions: Mapping[str, str] | None = None) -> Image.Image:
    """A row of labelled tiles (one per named HU image, all the same size) under one shared window; ``captions``
    (by name) add a line to a tile's bottom, e.g. its scores."""
    return labelled_row({label: Image.fromarray(to_display(image, window)).convert("RGB")
                          for label, image in images_hu.items()}, scale, captions)


def colour_bar(width: int, limit: float, signed: bool = True, height: int = 28) -> Image.Image:
    """A horizontal colour bar ``width`` pixels wide for maps on :func:`coloured`'s scale, labelled in HU at both
    ends (and 0 in the middle of a signed one)."""
    ramp = np.linspace(-1.0 if signed else 0.0, 1.0, max(width, 2))
    strip = np.repeat(diverging(ramp)[None], height // 2, axis=0)
    bar = Image.new("RGB", (width, height), (0, 0, 0))
    bar.paste(Image.fromarray(strip), (0, 0))
    draw, font = ImageDraw.Draw(bar), ImageFont.load_default(size=max(9, height // 2 - 3))
    low = f"-{limit:g} HU" if signed else "0 HU"
    draw.text((2, height // 2), low, font=font, fill=(235, 235, 235))
    high = f"+{limit:g} HU" if signed else f"{limit:g} HU"
    draw.text((width - 2, height // 2), high, font=font, fill=(235, 235, 235), anchor="ra")
    if signed:
        draw.text((width // 2, height // 2), "0", font=font, fill=(235, 235, 235), anchor="ma")
    return bar


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
    """A row of labelled HU maps under one shared colour scale (:func:`map_tiles`), its colour bar below."""
    row = labelled_row(map_tiles(maps_hu, signed), scale)
    limit = difference_limit(list(maps_hu.values()))
    bar = colour_bar(row.width, limit, signed)
    picture = Image.new("RGB", (row.width, row.height + bar.height))
    picture.paste(row, (0, 0))
    picture.paste(bar, (0, row.height))
    return picture


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


#: The file that marks a folder as one ``sparsect reconstruct --out`` run's (JSON: the version that wrote it).
RUN_MARKER = ".sparsect-run.json"


class Staging:
    """A staging folder beside an output folder ``out``: a run's results are written there, then swapped in as
    ``out`` whole (:meth:`commit`), so ``out`` holds one run's results, never a mix, and an interrupted or failed
    run leaves it as it was.

    Created before any work starts, it also checks ``out``: it must be new, empty, or an earlier run's folder
    (it holds :data:`RUN_MARKER`) with ``force`` (then it is replaced whole); a folder sparsect did not write is
    never replaced. Problems raise :class:`sparsect.app.settings.InputError`.
    """

    def __init__(self, out: str | os.PathLike, force: bool = False) -> None:
        self.out = Path(out)
        _check_out(self.out, force)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=self.out.parent))
        except OSError as error:
            raise InputError(f"--out: cannot write to {str(self.out.parent)!r}: {error.strerror or error}") from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.folder, 0o777 & ~umask)  # mkdtemp makes it private; the output folder follows the umask

    def commit(self) -> list[Path]:
        """Mark the staged folder as a run's and swap it in as ``out`` (an earlier run's folder is moved aside,
        then deleted); returns the files now in ``out``."""
        atomic_write(self.folder / RUN_MARKER, (json.dumps({"sparsect": __version__}) + "\n").encode())
        old = None
        if self.out.exists() and any(self.out.iterdir()):
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.folder, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return sorted(p for p in self.out.rglob("*") if p.is_file() and p.name != RUN_MARKER)

    def discard(self) -> None:
        """Remove the staging folder and whatever is left in it (nothing after :meth:`commit`)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _check_out(out: Path, force: bool) -> None:
    """:class:`InputError` unless ``out`` may receive a run's results (see :class:`Staging`)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / RUN_MARKER).is_file():
        raise InputError(f"--out {str(out)!r} is not empty and holds no sparsect run; give a new or empty folder")
    if not force:
        raise InputError(f"--out {str(out)!r} holds an earlier run's results; give --force to replace them whole, "
                         "or another folder")
