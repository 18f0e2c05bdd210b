"""The coordinate networks' hyper-parameters (:class:`LRNNConfig`, :class:`WIREConfig`, :class:`SIRENConfig`).

Plain dataclasses without torch, so that presets and the registry can be read without loading it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..checks import check_config_fields

#: The LRNN component functions' activations.
ACTIVATIONS = ("siren", "spder", "spder_atan")


@dataclass(frozen=True)
class LRNNConfig:
    """Hyper-parameters of :class:`LRNN`."""

    in_features: int = 2
    out_features: int = 1
    depth: int = 2  # number of multiplicative layers
    rank: int = 16  # r: neurons per layer
    proj_dim: int = 4  # d: components per neuron
    width: int = 4  # hidden width of each component MLP
    activation: str = "siren"
    w0: float = 30.0  # component frequency in the first layer
    hidden_w0: float = 1.0  # component frequency in the following layers
    shared: bool = False  # one component MLP per neuron (shared by its d components)
    init_std: float = 1.0  # std of each component function at initialisation
    coord_scale: float = 1.0  # input coordinates are multiplied by this (coarse-to-fine)
    fused: bool = True  # chunked/fused CPU kernel; False = plain autograd (materialises N*r*d*width)
    compile: bool = False  # torch.compile the layers (uses the plain formulation, fused by inductor)

    def __post_init__(self) -> None:
        check_config_fields(self)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"LRNNConfig.activation must be one of {', '.join(sorted(ACTIVATIONS))}, "
                             f"got {self.activation!r}")


@dataclass(frozen=True)
class WIREConfig:
    """Hyper-parameters of :class:`WIRE` (``hidden_layers`` counts hidden->hidden Gabor layers)."""

    in_features: int = 2
    out_features: int = 1
    hidden_features: int = int(300 / math.sqrt(2))  # 212 complex features
    hidden_layers: int = 2
    w0: float = 10.0
    s0: float = 10.0
    trainable_w0_s0: bool = False
    coord_scale: float = 1.0

    def __post_init__(self) -> None:
        check_config_fields(self)


@dataclass(frozen=True)
class SIRENConfig:
    """Hyper-parameters of :class:`SIREN` (``hidden_layers`` counts hidden->hidden sine layers)."""

    in_features: int = 2
    out_features: int = 1
    hidden_features: int = 64
    hidden_layers: int = 2
    w0: float = 30.0  # first layer frequency
    hidden_w0: float = 30.0
    coord_scale: float = 1.0

    def __post_init__(self) -> None:
        check_config_fields(self)
