"""The pictures of a batch unit: a contact sheet of (reference | reconstruction) pairs and a sheet of the slices'
trust maps, each a near-square grid at most ``max_width`` pixels wide."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from sparsect.app import outputs


def _grid(cells: list[Image.Image], max_width: int = 2048) -> Image.Image:
    """The same-sized cells in a near-square grid, shrunk to at most ``max_width`` pixels wide."""
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


def contact_sheet(references: np.ndarray, images: np.ndarray, slices: tuple[int, ...], label: str,
                  max_width: int = 2048, window: Any = "full") -> Any:
    """A grid of (reference | reconstruction) pairs, one per slice, at most ``max_width`` pixels wide, under the
    display ``window`` (a name in :data:`sparsect.reconstruct.metrics.WINDOWS` or a (low, high) HU pair)."""
    return _grid([outputs.comparison_image({f"#{s}": ref, label: img}, window) for s, ref, img in
                  zip(slices, references, images, strict=True)], max_width)


def map_sheet(maps_hu: np.ndarray, slices: tuple[int, ...], signed: bool = True, max_width: int = 2048) -> Any:
    """A grid of the slices' (n_slices, H, W) HU maps under one shared colour scale, each labelled."""
    tiles = outputs.map_tiles({f"#{s}": m for s, m in zip(slices, maps_hu, strict=True)}, signed)
    return _grid([outputs.labelled_row({label: tile}) for label, tile in tiles.items()], max_width)


__all__ = ["contact_sheet", "map_sheet"]
