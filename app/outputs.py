"""Writing results to disk atomically: PNG images, NPZ arrays and a JSON summary."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sparsect.app.settings import InputError
from sparsect.reconstruct import metrics


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def to_display(image_hu: np.ndarray, window: metrics.WindowLike = "full") -> np.ndarray:
    """uint8 (H, W) grey levels of an HU image under a display window (name or (low, high) HU)."""
    return np.round(metrics.normalize(image_hu, window) * 255).astype(np.uint8)


def comparison_image(images_hu: Mapping[str, np.ndarray], window: metrics.WindowLike = "full",
                     scale: int = 1) -> Image.Image:
    """A row of labelled tiles (one per named HU image, all the same size) under one shared window."""
    tiles = []
    for label, image in images_hu.items():
        tile = Image.fromarray(to_display(image, window)).convert("RGB")
        if scale != 1:
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
        ImageDraw.Draw(tile).text((4, 4), label, fill=(255, 210, 0))
        tiles.append(tile)
    sheet = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width
    return sheet


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
    return atomic_write_bytes(path, png_bytes(image))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Save named arrays as a compressed NPZ atomically."""
    return atomic_write_bytes(path, npz_bytes(arrays))


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Save ``payload`` as indented JSON atomically."""
    return atomic_write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


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
        renamed over old ones. Returns the files now in place."""
        self.out.mkdir(exist_ok=True)
        moved: list[Path] = []
        for relative, kind in sorted(self.planned.items()):
            staged, target = self.folder / relative, self.out / relative
            if not staged.exists() or (kind == "folder" and any(
                    other != relative and other.startswith(relative + "/") for other in self.planned)):
                continue  # not produced, or a parent folder whose planned children move one by one
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "folder" and target.exists():
                old = self.folder / f".old-{relative.replace('/', '_')}"
                os.replace(target, old)
            os.replace(staged, target)
            moved += [target] if kind == "file" else sorted(p for p in target.rglob("*") if p.is_file())
        return moved

    def discard(self) -> None:
        """Remove the staging folder and whatever is left in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
