"""Ramp filters for filtered backprojection, applied along the detector axis in Fourier space."""

from __future__ import annotations

import math

import torch

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")


def padded_length(det_count: int) -> int:
    """Zero-padded length: the next power of two at least twice the detector count (no wrap-around)."""
    return max(64, 1 << math.ceil(math.log2(2 * det_count)))


def ramp_response(det_count: int, det_spacing: float = 1.0, filter: str = "ram-lak",
                  dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """Frequency response (padded_length // 2 + 1,) of the windowed ramp for ``torch.fft.rfft``.

    The ramp is the Fourier transform of the band-limited spatial kernel (h[0] = 1/4,
    h[n odd] = -1/(pi n)^2, h[n even] = 0), which has no DC error, divided by ``det_spacing`` so that
    line integrals in pixel units give back attenuation per pixel unit.
    """
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {', '.join(FILTERS)}")
    n = padded_length(det_count)
    offsets = torch.cat([torch.arange(0, n // 2 + 1), torch.arange(-(n // 2) + 1, 0)]).to(torch.float64)
    kernel = torch.zeros(n, dtype=torch.float64)
    kernel[0] = 0.25
    odd = offsets.remainder(2) == 1
    kernel[odd] = -1.0 / (math.pi * offsets[odd]) ** 2
    response = torch.fft.rfft(kernel).real
    frequency = torch.fft.rfftfreq(n, dtype=torch.float64)  # cycles per sample, 0 .. 0.5
    omega = 2 * math.pi * frequency
    if filter == "shepp-logan":
        window = torch.sinc(frequency)  # sin(pi f) / (pi f), which is torch.sinc's convention
    elif filter == "cosine":
        window = torch.cos(omega / 2)
    elif filter == "hamming":
        window = 0.54 + 0.46 * torch.cos(omega)
    elif filter == "hann":
        window = 0.5 + 0.5 * torch.cos(omega)
    else:
        window = torch.ones_like(frequency)
    return (response * window / det_spacing).to(device=device, dtype=dtype)


def filter_sinogram(sinogram: torch.Tensor, det_spacing: float = 1.0, filter: str = "ram-lak") -> torch.Tensor:
    """Ramp-filter ``sinogram`` (..., n_angles, det_count) along its last axis; same shape and dtype.

    Zero-pads to a power of two at least twice the detector count. Half precision is filtered in
    float32 and cast back.
    """
    det_count = sinogram.shape[-1]
    work = sinogram if sinogram.dtype in (torch.float32, torch.float64) else sinogram.float()
    n = padded_length(det_count)
    response = ramp_response(det_count, det_spacing, filter, work.dtype, work.device)
    spectrum = torch.fft.rfft(work, n=n, dim=-1) * response
    return torch.fft.irfft(spectrum, n=n, dim=-1)[..., :det_count].to(sinogram.dtype)
