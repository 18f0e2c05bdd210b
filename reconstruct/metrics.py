"""Image quality metrics for CT reconstructions in Hounsfield units.

Normalisation (PSNR and SSIM): both images are clipped to an HU window ``[low, high]`` and mapped
linearly to ``[0, 1]``; the data range is then 1. The default window is the full 12-bit CT range
``[-1024, 3071]`` HU. Clinical display windows can be selected by name (see :data:`WINDOWS`, given as
``(center, width)``, i.e. ``[center - width / 2, center + width / 2]``). RMSE is reported in HU on the
raw, unclipped images.

SSIM follows Wang et al. (2004) like ``skimage.metrics.structural_similarity(a, b, data_range=1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: an 11x11 Gaussian window
(sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, symmetric ("reflect") borders. Without a
mask the local SSIM map is averaged over the interior (a 5-pixel border is dropped, as scikit-image
does); with a mask the full map is averaged over the masked pixels.

Masks: ``None`` (all pixels), ``"circle"`` (the reconstruction circle inscribed in the image: pixel
centres within ``min(H, W) / 2`` of the image centre) or a boolean array broadcastable to (H, W).

Reference-range metrics (the convention of the LRNN and WIRE papers): :func:`psnr_range` and
:func:`ssim_range` take the data range from the reference itself, its min..max over the masked pixels,
and map both images by it onto [0, 1] without clipping (values outside that range count in full).
:func:`rmse_soft_hu` is the RMSE in HU over the masked pixels whose reference lies in
:data:`SOFT_TISSUE_HU` ([-200, 200] HU), where sparse-view streaks and over-smoothing matter clinically.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sparsect.reconstruct.windows import DEFAULT_WINDOW, WINDOWS, WindowLike, window_bounds  # noqa: F401 - WINDOWS read from here too

#: HU interval of the reference pixels :func:`rmse_soft_hu` is taken over (inclusive).
SOFT_TISSUE_HU: tuple[float, float] = (-200.0, 200.0)

MaskLike = str | np.ndarray | torch.Tensor | None

_K1, _K2, _SIGMA, _TRUNCATE = 0.01, 0.03, 1.5, 3.5
_RADIUS = int(_TRUNCATE * _SIGMA + 0.5)  # 5: an 11-tap window


def normalize(image_hu: np.ndarray | torch.Tensor, window: WindowLike = DEFAULT_WINDOW) -> np.ndarray:
    """Clip ``image_hu`` (any shape, HU) to the window and map it to [0, 1] (float64)."""
    low, high = window_bounds(window)
    return (np.clip(_as_array(image_hu), low, high) - low) / (high - low)


def circle_mask(shape: Sequence[int]) -> np.ndarray:
    """Boolean (H, W) mask of the inscribed reconstruction circle: pixel centres within min(H, W) / 2
    of the image centre."""
    height, width = int(shape[-2]), int(shape[-1])
    rows = np.arange(height) - (height - 1) / 2.0
    cols = np.arange(width) - (width - 1) / 2.0
    radius = min(height, width) / 2.0
    return rows[:, None] ** 2 + cols[None, :] ** 2 <= radius ** 2


def _as_array(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    return np.asarray(image, dtype=np.float64)


def _pair(image_hu, reference_hu) -> tuple[np.ndarray, np.ndarray]:
    image, reference = _as_array(image_hu), _as_array(reference_hu)
    if image.shape != reference.shape:
        raise ValueError(f"image and reference shapes differ: {image.shape} vs {reference.shape}")
    if image.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (B, H, W), got shape {image.shape}")
    return image, reference


def _resolve_mask(mask: MaskLike, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask != "circle":
            raise ValueError(f"mask must be None, 'circle' or a boolean array, got {mask!r}")
        return circle_mask(shape)
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    array = np.asarray(mask).astype(bool)
    try:
        array = np.broadcast_to(array, shape)
    except ValueError as exc:
        raise ValueError(f"mask of shape {array.shape} does not fit images of shape {shape}") from exc
    return array


def _masked_mean(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Mean over the last two axes (all pixels or the masked ones), shape values.shape[:-2]."""
    if mask is None:
        return values.mean(axis=(-2, -1))
    mask = np.broadcast_to(mask, values.shape)
    counts = mask.sum(axis=(-2, -1))
    if np.any(counts == 0):
        raise ValueError("mask selects no pixels")
    return np.where(mask, values, 0.0).sum(axis=(-2, -1)) / counts


def _scalar(values: np.ndarray) -> float | np.ndarray:
    return float(values) if values.ndim == 0 else values


def psnr(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
         window: WindowLike = DEFAULT_WINDOW, mask: MaskLike = None) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB after windowing to [0, 1] (data range 1).

    Parameters
    ----------
    image_hu, reference_hu : (H, W) or (B, H, W) images in HU (numpy or torch).
    window : name in :data:`WINDOWS` or (low, high) in HU.
    mask : None, "circle" or boolean array (H, W); the MSE is taken over the masked pixels.

    Returns
    -------
    float (or (B,) array for a batch); ``inf`` for identical images.
    """
    image, reference = _pair(image_hu, reference_hu)
    error = (normalize(image, window) - normalize(reference, window)) ** 2
    mse = _masked_mean(error, _resolve_mask(mask, image.shape[-2:]))
    with np.errstate(divide="ignore"):
        return _scalar(10.0 * np.log10(1.0 / mse))


def rmse_hu(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
            mask: MaskLike = None) -> float | np.ndarray:
    """Root-mean-square error in HU of the raw (unclipped) images, over the masked pixels.

    Parameters
    ----------
    image_hu, reference_hu : (H, W) or (B, H, W) images in HU.
    mask : None, "circle" or boolean array (H, W).

    Returns
    -------
    float (or (B,) array for a batch), in HU.
    """
    image, reference = _pair(image_hu, reference_hu)
    mse = _masked_mean((image - reference) ** 2, _resolve_mask(mask, image.shape[-2:]))
    return _scalar(np.sqrt(mse))


def _gaussian_kernel() -> np.ndarray:
    offsets = np.arange(-_RADIUS, _RADIUS + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / _SIGMA) ** 2)
    return kernel / kernel.sum()


def _gaussian_blur(images: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter over the last two axes with half-sample symmetric borders."""
    kernel = _gaussian_kernel()
    out = images
    for axis in (-2, -1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (_RADIUS, _RADIUS)
        padded = np.pad(out, pad, mode="symmetric")
        length = out.shape[axis]
        result = np.zeros_like(out)
        for tap, weight in enumerate(kernel):
            result += weight * np.take(padded, np.arange(tap, tap + length), axis=axis)
        out = result
    return out


def _ssim_of_unit_range(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Local SSIM map of images already scaled so the data range is 1."""
    if min(x.shape[-2:]) < 2 * _RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * _RADIUS + 1}x{2 * _RADIUS + 1} pixels")
    mu_x, mu_y = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mu_x * mu_x
    var_y = _gaussian_blur(y * y) - mu_y * mu_y
    cov = _gaussian_blur(x * y) - mu_x * mu_y
    c1, c2 = _K1 ** 2, _K2 ** 2  # data range 1
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def _mean_of_map(values: np.ndarray, mask: MaskLike) -> float | np.ndarray:
    """An SSIM map's mean: over the masked pixels, or without its 5-pixel border when there is no mask."""
    resolved = _resolve_mask(mask, values.shape[-2:])
    if resolved is None:
        values = values[..., _RADIUS:-_RADIUS, _RADIUS:-_RADIUS]
    return _scalar(_masked_mean(values, resolved))


def ssim_map(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
             window: WindowLike = DEFAULT_WINDOW) -> np.ndarray:
    """Local SSIM map (same shape as the inputs, float64) of the windowed [0, 1] images."""
    image, reference = _pair(image_hu, reference_hu)
    return _ssim_of_unit_range(normalize(image, window), normalize(reference, window))


def ssim(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
         window: WindowLike = DEFAULT_WINDOW, mask: MaskLike = None) -> float | np.ndarray:
    """Structural similarity (Gaussian 11x11, sigma 1.5) of the windowed [0, 1] images.

    Parameters
    ----------
    image_hu, reference_hu : (H, W) or (B, H, W) images in HU, at least 11x11.
    window : name in :data:`WINDOWS` or (low, high) in HU.
    mask : None (mean of the map without its 5-pixel border, as scikit-image), "circle" or a boolean
        (H, W) array (mean of the full map over the masked pixels).

    Returns
    -------
    float in [-1, 1] (or (B,) array for a batch).
    """
    return _mean_of_map(ssim_map(image_hu, reference_hu, window), mask)


def _reference_range(reference: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high - low) of the reference over the masked pixels, each of shape reference.shape[:-2] + (1, 1)."""
    selected = np.ones(reference.shape, bool) if mask is None else np.broadcast_to(mask, reference.shape)
    if not selected.any(axis=(-2, -1)).all():
        raise ValueError("mask selects no pixels")
    low = np.where(selected, reference, np.inf).min(axis=(-2, -1), keepdims=True)
    high = np.where(selected, reference, -np.inf).max(axis=(-2, -1), keepdims=True)
    if np.any(high <= low):
        raise ValueError("the reference is constant over the masked pixels: it has no data range")
    return low, high - low


def psnr_range(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
               mask: MaskLike = None) -> float | np.ndarray:
    """PSNR in dB with the reference's own data range: ``10 log10((max - min)^2 / MSE)``, where max, min
    and the MSE are over the masked pixels of the raw (unclipped) HU images.

    Parameters
    ----------
    image_hu, reference_hu : (H, W) or (B, H, W) images in HU; a batch takes each reference's own range.
    mask : None, "circle" or boolean array (H, W).

    Returns
    -------
    float (or (B,) array for a batch); ``inf`` for identical images.
    """
    image, reference = _pair(image_hu, reference_hu)
    resolved = _resolve_mask(mask, image.shape[-2:])
    _, span = _reference_range(reference, resolved)
    mse = _masked_mean((image - reference) ** 2, resolved)
    with np.errstate(divide="ignore"):
        return _scalar(10.0 * np.log10(span[..., 0, 0] ** 2 / mse))


def ssim_range(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
               mask: MaskLike = None) -> float | np.ndarray:
    """SSIM (as :func:`ssim`) with the reference's own data range: both images mapped by the reference's
    min..max over the masked pixels onto [0, 1] (``(x - min) / (max - min)``, not clipped), data range 1.

    SSIM's luminance term is not shift-invariant, so this is not scikit-image's SSIM of the raw HU
    images with ``data_range=max - min``; it is that of the mapped images with ``data_range=1``.

    Parameters
    ----------
    image_hu, reference_hu : (H, W) or (B, H, W) images in HU, at least 11x11.
    mask : None (mean of the map without its 5-pixel border), "circle" or a boolean (H, W) array.

    Returns
    -------
    float (or (B,) array for a batch).
    """
    image, reference = _pair(image_hu, reference_hu)
    low, span = _reference_range(reference, _resolve_mask(mask, image.shape[-2:]))
    return _mean_of_map(_ssim_of_unit_range((image - low) / span, (reference - low) / span), mask)


def rmse_soft_hu(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
                 mask: MaskLike = None, soft_tissue: Sequence[float] = SOFT_TISSUE_HU) -> float | np.ndarray:
    """RMSE in HU over the masked pixels whose reference lies in ``soft_tissue`` (default [-200, 200] HU).

    Parameters
    ----------
    image_hu, reference_hu : (H, W) or (B, H, W) images in HU.
    mask : None, "circle" or boolean array (H, W).
    soft_tissue : (low, high) HU bounds, inclusive.

    Returns
    -------
    float (or (B,) array for a batch), in HU; NaN where the reference has no such pixels.
    """
    image, reference = _pair(image_hu, reference_hu)
    low, high = window_bounds(soft_tissue)
    selected = (reference >= low) & (reference <= high)
    resolved = _resolve_mask(mask, image.shape[-2:])
    if resolved is not None:
        selected &= resolved
    counts = selected.sum(axis=(-2, -1))
    squared = np.where(selected, (image - reference) ** 2, 0.0).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar(np.where(counts > 0, np.sqrt(squared / np.maximum(counts, 1)), np.nan))


def compare(image_hu: np.ndarray | torch.Tensor, reference_hu: np.ndarray | torch.Tensor,
            window: WindowLike = DEFAULT_WINDOW, mask: MaskLike = "circle",
            display_window: WindowLike | None = None) -> dict[str, float | np.ndarray]:
    """Every score of ``image_hu`` against ``reference_hu`` in one call, over the masked pixels.

    Parameters
    ----------
    image_hu, reference_hu : (H, W) or (B, H, W) images in HU.
    window : name in :data:`WINDOWS` or (low, high) in HU, for ``psnr`` and ``ssim``.
    mask : "circle" (default, the inscribed reconstruction circle), None or a boolean array.
    display_window : optionally the window the image is viewed in (name or (low, high)): adds
        ``psnr_display`` and ``ssim_display``, the scores of what the reader sees.

    Returns
    -------
    ``psnr`` (dB), ``ssim`` (in ``window``), ``rmse_hu``; ``psnr_range`` (dB), ``ssim_range`` (the
    reference's own data range); ``rmse_soft_hu`` (HU, NaN without soft-tissue pixels); and
    ``psnr_display``, ``ssim_display`` with ``display_window``.
    """
    scores = {
        "psnr": psnr(image_hu, reference_hu, window, mask),
        "ssim": ssim(image_hu, reference_hu, window, mask),
        "rmse_hu": rmse_hu(image_hu, reference_hu, mask),
        "psnr_range": psnr_range(image_hu, reference_hu, mask),
        "ssim_range": ssim_range(image_hu, reference_hu, mask),
        "rmse_soft_hu": rmse_soft_hu(image_hu, reference_hu, mask),
    }
    if display_window is not None:
        scores["psnr_display"] = psnr(image_hu, reference_hu, display_window, mask)
        scores["ssim_display"] = ssim(image_hu, reference_hu, display_window, mask)
    return scores
