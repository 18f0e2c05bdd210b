"""SIREN: MLP with sine activations (Sitzmann et al., 2020) for coordinates ``(N, 2) -> (N, 1)``."""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn

from .configs import SIRENConfig


class SineLayer(nn.Module):
    """``(N, in) -> (N, out)``: ``sin(w0 (W x + b))`` with the SIREN initialisation.

    First layer ``W ~ U(-1/in, 1/in)``; others ``W ~ U(-sqrt(6/in)/w0, sqrt(6/in)/w0)``.
    """

    def __init__(self, in_features: int, out_features: int, w0: float = 30.0, is_first: bool = False) -> None:
        super().__init__()
        self.w0 = float(w0)
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / self.w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * self.linear(x))


class SIREN(nn.Module):
    """SIREN coordinate network: first sine layer, ``hidden_layers`` sine layers, linear output."""

    def __init__(self, config: SIRENConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = replace(config or SIRENConfig(), **overrides)
        self.config = cfg
        h = cfg.hidden_features
        layers = [SineLayer(cfg.in_features, h, cfg.w0, is_first=True)]
        layers += [SineLayer(h, h, cfg.hidden_w0) for _ in range(cfg.hidden_layers)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(h, cfg.out_features)
        bound = math.sqrt(6.0 / h) / cfg.hidden_w0
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound)

    def forward(self, coords: Tensor) -> Tensor:
        """``coords`` ``(N, in_features)`` -> ``(N, out_features)``."""
        return self.head(self.body(coords * self.config.coord_scale))


def siren_parameter_count(cfg: SIRENConfig) -> int:
    """Closed-form number of parameters of ``SIREN(cfg)``."""
    h = cfg.hidden_features
    return (cfg.in_features + 1) * h + cfg.hidden_layers * (h + 1) * h + (h + 1) * cfg.out_features
