"""Pictures for the page (numpy + PIL only): windowed tiles, zoom crops, difference, data-consistency and
uncertainty maps, colour bars, sinograms and line profiles. All functions are pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sparsect.app import outputs
from sparsect.app.outputs import difference_limit as difference_limit  # the page's colour limits: one rule
from sparsect.app.outputs import diverging
from sparsect.reconstruct import metrics

#: Window presets shown on the page: key -> (label, center, width); "full" is the 12-bit CT range.
WINDOW_PRESETS: dict[str, tuple[str, float, float]] = {
    "brain": ("Brain 40/80", *metrics.WINDOWS["brain"]),
    "subdural": ("Subdural 75/215", *metrics.WINDOWS["subdural"]),
    "soft_tissue": ("Soft tissue 40/400", *metrics.WINDOWS["soft_tissue"]),
    "lung": ("Lung -600/1500", *metrics.WINDOWS["lung"]),
    "bone": ("Bone 400/1800", *metrics.WINDOWS["bone"]),
    "full": ("Full range", *metrics.WINDOWS["full"]),
    "custom": ("Custom", 40.0, 400.0),
}

ZOOM_COLOUR = (255, 200, 0)
PROFILE_COLOUR = (0, 220, 255)
#: Line-profile colours: black for the ground truth, then the Okabe-Ito palette (distinct, also for the
#: common colour-vision deficiencies), so every method of the page (8) gets its own.
REFERENCE_LINE = "#000000"
LINE_COLOURS = ("#E69F00", "#0072B2", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999")
#: Difference maps outside the scored region (the reconstruction circle): neutral grey, unlike white (0 HU).
UNSCORED_COLOUR = (190, 190, 190)


def window_from(preset: str, center: float | None = None, width: float | None = None) -> tuple[float, float]:
    """(low, high) HU of a preset, or of (center, width) for "custom"."""
    if preset == "custom":
        if center is None or width is None or not width > 0:
            raise ValueError("a custom window needs a centre and a positive width")
        return center - width / 2.0, center + width / 2.0
    _, c, w = WINDOW_PRESETS[preset]
    return c - w / 2.0, c + w / 2.0


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def grey(image_hu: np.ndarray, window: tuple[float, float]) -> Image.Image:
    """An RGB PIL image of an HU image under a (low, high) window."""
    return Image.fromarray(outputs.to_display(image_hu, window)).convert("RGB")


@dataclass(frozen=True)
class Zoom:
    """A square region: centre (x = column, y = row) in pixels and a magnification factor."""

    cx: int
    cy: int
    factor: float

    def box(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) pixel box inside an image of ``shape``, kept inside the image."""
        h, w = int(shape[0]), int(shape[1])
        side_w = max(4, int(round(w / self.factor)))
        side_h = max(4, int(round(h / self.factor)))
        left = int(np.clip(self.cx - side_w // 2, 0, w - side_w))
        top = int(np.clip(self.cy - side_h // 2, 0, h - side_h))
        return left, top, left + side_w, top + side_h


def crop(image: np.ndarray, zoom: Zoom) -> np.ndarray:
    """The zoom region of a 2D array."""
    left, top, right, bottom = zoom.box(image.shape)
    return image[top:bottom, left:right]


def tile(image_hu: np.ndarray, window: tuple[float, float], size: int, zoom: Zoom | None = None,
         outline: Zoom | None = None, profile: tuple[str, int] | None = None) -> Image.Image:
    """A display tile: the (optionally zoomed) windowed image resized to ``size`` x ``size`` pixels,
    optionally outlining a zoom box and marking a profile line ("row"/"column", index)."""
    h, w = image_hu.shape
    region = crop(image_hu, zoom) if zoom is not None else image_hu
    picture = grey(region, window).resize((size, size), Image.NEAREST if zoom is not None else Image.BILINEAR)
    draw = ImageDraw.Draw(picture)
    sx, sy = size / w, size / h
    if outline is not None:
        left, top, right, bottom = outline.box(image_hu.shape)
        draw.rectangle([left * sx, top * sy, right * sx - 1, bottom * sy - 1], outline=ZOOM_COLOUR,
                       width=max(1, size // 200))
    if profile is not None and zoom is None:
        axis, index = profile
        if axis == "row":
            y = (index + 0.5) * sy
            draw.line([(0, y), (size, y)], fill=PROFILE_COLOUR, width=1)
        else:
            x = (index + 0.5) * sx
            draw.line([(x, 0), (x, size)], fill=PROFILE_COLOUR, width=1)
    return picture


def _nice(value: float) -> float:
    """The nearest (in ratio) of 1, 2, 2.5, 5 times a power of ten."""
    value = max(float(value), 1.0)
    candidates = [m * 10.0 ** e for e in range(int(np.floor(np.log10(value))) - 1, int(np.floor(np.log10(value))) + 2)
                  for m in (1, 2, 2.5, 5)]
    return float(min(candidates, key=lambda c: abs(np.log(c / value))))


def difference_default(window: tuple[float, float]) -> float:
    """Default colour limit (HU) of the difference maps under a display window: a quarter of its width,
    rounded to a readable step (brain 80 HU wide: 20; soft tissue 400: 100; full range: 1000), so an error
    that the window would show as a quarter of its grey scale is full colour."""
    return _nice((float(window[1]) - float(window[0])) / 4.0)


def difference_tile(image_hu: np.ndarray, reference_hu: np.ndarray, limit: float, size: int,
                    zoom: Zoom | None = None) -> Image.Image:
    """RGB difference map ``image - reference`` with a symmetric colour scale [-limit, +limit] HU.

    Pixels outside the reconstruction circle (where no method is scored) are grey for every method."""
    diff = np.asarray(image_hu, dtype=np.float64) - np.asarray(reference_hu, dtype=np.float64)
    rgb = diverging(diff / limit)
    rgb[~metrics.circle_mask(diff.shape)] = UNSCORED_COLOUR
    return _rgb_tile(rgb, size, zoom)


def map_tile(values_hu: np.ndarray, limit: float, size: int, signed: bool = True,
             zoom: Zoom | None = None) -> Image.Image:
    """RGB tile of an HU map (a data-consistency or uncertainty map) under :func:`app.outputs.coloured`."""
    return _rgb_tile(outputs.coloured(values_hu, limit, signed), size, zoom)


def _rgb_tile(rgb: np.ndarray, size: int, zoom: Zoom | None) -> Image.Image:
    """(H, W, 3) uint8 colours as a ``size`` x ``size`` tile, cropped to ``zoom`` (then magnified pixel by pixel)."""
    if zoom is not None:
        rgb = crop(rgb, zoom)
    return Image.fromarray(rgb).resize((size, size), Image.NEAREST if zoom is not None else Image.BILINEAR)


def colorbar(limit: float, width: int = 512, height: int = 54, signed: bool = True) -> Image.Image:
    """A horizontal colour bar from -limit (0 unless ``signed``) to +limit HU with tick labels."""
    bar_h = height // 2
    picture = Image.new("RGB", (width, height), (255, 255, 255))
    low = -1.0 if signed else 0.0
    ramp = diverging(np.linspace(low, 1, width - 40)[None, :].repeat(bar_h, axis=0))
    picture.paste(Image.fromarray(ramp), (20, 2))
    draw = ImageDraw.Draw(picture)
    font = _font(13)
    ticks = ((0.0, f"-{limit:g} HU"), (0.5, "0"), (1.0, f"+{limit:g} HU")) if signed else \
        ((0.0, "0"), (0.5, f"{limit / 2:g} HU"), (1.0, f"{limit:g} HU"))
    for frac, text in ticks:
        x = 20 + frac * (width - 41)
        draw.line([(x, 2 + bar_h), (x, 6 + bar_h)], fill=(60, 60, 60))
        box = draw.textbbox((0, 0), text, font=font)
        tw = box[2] - box[0]
        tx = min(max(0, x - tw / 2), width - tw - 1)
        draw.text((tx, 8 + bar_h), text, fill=(40, 40, 40), font=font)
    return picture


def sinogram_image(sinogram: np.ndarray, height: int = 256) -> Image.Image:
    """The sparse sinogram (views x detector bins) as a grey image, views stretched to ``height`` rows
    (nearest neighbour, so each view stays a visible band)."""
    s = np.asarray(sinogram, dtype=np.float64)
    low, high = float(s.min()), float(s.max())
    grey8 = np.round((s - low) / (high - low if high > low else 1.0) * 255).astype(np.uint8)
    return Image.fromarray(grey8).resize((s.shape[1], height), Image.NEAREST)


def thumbnail(image_hu: np.ndarray, size: int = 160) -> Image.Image:
    """A small preview of a slice with an automatic window (1st to 99th percentile)."""
    low, high = np.percentile(image_hu, [1, 99])
    if not high > low:
        high = low + 1
    return grey(image_hu, (float(low), float(high))).resize((size, size), Image.BILINEAR)


def profile_colours(names: Sequence[str]) -> list[str]:
    """One distinct colour per profile line, in the order of ``names`` (the first is the ground truth)."""
    return [REFERENCE_LINE if i == 0 else LINE_COLOURS[(i - 1) % len(LINE_COLOURS)] for i in range(len(names))]


def profile(images_hu: Mapping[str, np.ndarray], axis: str, index: int) -> dict[str, np.ndarray]:
    """HU values along one row (``axis="row"``) or column of each image."""
    out = {}
    for name, image in images_hu.items():
        out[name] = np.asarray(image[index, :] if axis == "row" else image[:, index], dtype=np.float64)
    return out


def comparison_sheet(images_hu: Mapping[str, np.ndarray], window: tuple[float, float], size: int = 256
                     ) -> Image.Image:
    """The downloadable comparison PNG: labelled tiles side by side, one shared window."""
    h = next(iter(images_hu.values())).shape[0]
    return outputs.comparison_image(images_hu, window, scale=max(1, int(np.ceil(size / h))))
