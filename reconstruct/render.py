"""The image of a coordinate network: the pixel-centre grid it is evaluated on and the renderer.

The image is the network evaluated on the pixel-centre grid times ``output_scale``::

    image[row, col] = output_scale * net(x, y),   x = (col - (W-1)/2) / s,   y = ((H-1)/2 - row) / s,

with ``s = max((H-1)/2, (W-1)/2)`` (isotropic, so the longer axis spans [-1, 1] and pixels stay square;
x right, y up, as in :mod:`operators.geometry`), in attenuation per pixel unit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Sharpness of the softplus of ``FitConfig.positive`` (in units of the output scale).
POSITIVE_BETA = 10.0


def pixel_grid(image_size: tuple[int, int], device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates (H*W, 2) as (x, y) in [-1, 1], row-major (index ``row * W + col``)."""
    height, width = int(image_size[0]), int(image_size[1])
    half = max((height - 1) / 2, (width - 1) / 2, 1e-12)
    cols = (torch.arange(width, dtype=torch.float64) - (width - 1) / 2) / half
    rows = ((height - 1) / 2 - torch.arange(height, dtype=torch.float64)) / half
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1).to(device=device, dtype=dtype)


class Renderer:
    """Evaluates the network(s) on the pixel grid: ``image = output_scale * net(coords)`` as float32
    (B, H, W), optionally in pixel chunks and under bf16 autocast (CUDA)."""

    def __init__(self, net: Callable[[torch.Tensor], torch.Tensor], coords: torch.Tensor, batch: int,
                 image_size: tuple[int, int], output_scale: torch.Tensor, chunk_size: int | None,
                 amp: bool, positive: bool = False) -> None:
        self.net, self.coords, self.batch, self.image_size = net, coords, batch, image_size
        self.output_scale, self.amp, self.positive = output_scale.reshape(batch, 1), amp, positive
        self.coord_factor = 1.0  # multiplies the coordinates (see FitConfig.coordinate_ramp)
        n = coords.shape[0]
        step = n if chunk_size is None or chunk_size <= 0 else min(int(chunk_size), n)
        self.slices = [slice(i, min(i + step, n)) for i in range(0, n, step)]

    def _eval(self, coords: torch.Tensor) -> torch.Tensor:
        """``output_scale * net(coords)`` of (N, 2) pixel coordinates, float32 (B, N)."""
        if self.coord_factor != 1.0:
            coords = coords * self.coord_factor
        if self.amp:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                out = self.net(coords)
        else:
            out = self.net(coords)
        out = out.reshape(self.batch, -1).float()
        if self.positive:
            out = torch.nn.functional.softplus(out, beta=POSITIVE_BETA)
        return out * self.output_scale

    def image(self) -> torch.Tensor:
        """Differentiable (B, H, W) image (only used without chunking)."""
        return self._eval(self.coords).view(self.batch, *self.image_size)

    @property
    def chunked(self) -> bool:
        """Whether the grid is evaluated in more than one chunk (two-pass training)."""
        return len(self.slices) > 1

    @torch.no_grad()
    def image_no_grad(self) -> torch.Tensor:
        """The (B, H, W) image without autograd, chunk by chunk."""
        return torch.cat([self._eval(self.coords[s]) for s in self.slices], dim=1).view(
            self.batch, *self.image_size)

    def backward_chunks(self, grad_image: torch.Tensor) -> None:
        """Second pass of chunked training: re-evaluate each chunk with autograd and push ``grad_image``
        (dLoss/dImage, (B, H, W)) into the parameters, so memory is bounded by one chunk."""
        flat = grad_image.reshape(self.batch, -1)
        for s in self.slices:
            self._eval(self.coords[s]).backward(flat[:, s])


__all__ = ["POSITIVE_BETA", "Renderer", "pixel_grid"]
