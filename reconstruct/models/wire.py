"""WIRE: complex Gabor wavelet coordinate network (Saragadam et al., 2023), CT configuration.

Layer structure (``hidden_layers = 2``, ``hidden_features = 212`` complex features):

* ``GaborLayer(2 -> 212)``, real ``Linear`` (weight 2x212 + bias 212 = 636 real parameters),
  output ``exp(j w0 z - |s0 z|^2)`` is complex;
* 2 x ``GaborLayer(212 -> 212)`` with complex weights: ``(212*212 + 212) * 2 = 90,312`` each;
* complex ``Linear(212 -> 1)``: ``(212 + 1) * 2 = 426``; the network returns the real part;
* each of the 3 Gabor layers registers ``w0`` and ``s0`` as (frozen by default) scalar parameters,
  as the reference WIRE code does: ``3 * 2 = 6``.

Total ``636 + 2 * 90,312 + 426 + 6 = 181,692`` real parameters (complex counts as 2).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn

from .configs import WIREConfig


class ComplexLinear(nn.Module):
    """``(N, in)`` complex -> ``(N, out)`` complex; real and imaginary parts ``U(-1/sqrt(in), 1/sqrt(in))``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        w = torch.complex(torch.empty(out_features, in_features).uniform_(-bound, bound),
                          torch.empty(out_features, in_features).uniform_(-bound, bound))
        b = torch.complex(torch.empty(out_features).uniform_(-bound, bound),
                          torch.empty(out_features).uniform_(-bound, bound))
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(b)

    def forward(self, x: Tensor) -> Tensor:
        return torch.addmm(self.bias, x, self.weight.t())


class GaborLayer(nn.Module):
    """``(N, in) -> (N, out)`` complex: ``exp(j w0 z - |s0 z|^2)`` with ``z = W x + b``.

    The first layer has a real ``Linear`` (real input coordinates); later layers are complex.
    """

    def __init__(
        self, in_features: int, out_features: int, w0: float = 10.0, s0: float = 10.0,
        is_first: bool = False, trainable: bool = False,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features) if is_first else ComplexLinear(in_features, out_features)
        self.w0 = nn.Parameter(torch.tensor([float(w0)]), requires_grad=trainable)
        self.s0 = nn.Parameter(torch.tensor([float(s0)]), requires_grad=trainable)

    def forward(self, x: Tensor) -> Tensor:
        z = self.linear(x)
        omega = self.w0 * z
        scale = self.s0 * z
        return torch.exp(1j * omega - scale.abs().square())


class WIRE(nn.Module):
    """WIRE coordinate network ``(N, 2) -> (N, 1)`` (real part of a complex linear head)."""

    def __init__(self, config: WIREConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = replace(config or WIREConfig(), **overrides)
        self.config = cfg
        h = cfg.hidden_features
        kw = dict(w0=cfg.w0, s0=cfg.s0, trainable=cfg.trainable_w0_s0)
        layers = [GaborLayer(cfg.in_features, h, is_first=True, **kw)]
        layers += [GaborLayer(h, h, **kw) for _ in range(cfg.hidden_layers)]
        self.body = nn.Sequential(*layers)
        self.head = ComplexLinear(h, cfg.out_features)

    def forward(self, coords: Tensor) -> Tensor:
        """``coords`` ``(N, in_features)`` -> real ``(N, out_features)``."""
        return self.head(self.body(coords * self.config.coord_scale)).real


def wire_parameter_count(cfg: WIREConfig) -> int:
    """Closed-form real parameter count of ``WIRE(cfg)`` (complex = 2, ``w0``/``s0`` included)."""
    h = cfg.hidden_features
    first = (cfg.in_features + 1) * h
    hidden = cfg.hidden_layers * 2 * (h + 1) * h
    head = 2 * (h + 1) * cfg.out_features
    scalars = 2 * (cfg.hidden_layers + 1)
    return first + hidden + head + scalars
