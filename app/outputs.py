"""Writing results to disk atomically: PNG images, NPZ arrays and a JSON summary."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sparsect.data.atomic import atomic_write
from sparsect.reconstruct import metrics


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
    return atomic_write(path, png_bytes(image))


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Save named arrays as a compressed NPZ atomically."""
    return atomic_write(path, npz_bytes(arrays))


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Save ``payload`` as indented JSON atomically."""
    return atomic_write(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())
