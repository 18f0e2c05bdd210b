"""Building a coordinate network by name from a preset or config (:func:`build_model`) and counting its
parameters (:func:`count_parameters`)."""

from __future__ import annotations

from dataclasses import is_dataclass, replace
from typing import Any

from torch import nn

from .configs import LRNNConfig, SIRENConfig, WIREConfig
from .lrnn import LRNN
from .presets import Preset, get_preset
from .siren import SIREN
from .wire import WIRE

_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {
    "lrnn": (LRNN, LRNNConfig),
    "wire": (WIRE, WIREConfig),
    "siren": (SIREN, SIRENConfig),
}


def build_model(name: str, preset: str | Preset | Any = "preview", **overrides: Any) -> nn.Module:
    """Build model ``name`` (``lrnn`` / ``wire`` / ``siren``) from a preset or config.

    ``preset`` may be a preset name, a :class:`Preset`, the model's config dataclass or a dict of
    config fields (missing fields take the config defaults). ``overrides`` replace config fields,
    e.g. ``build_model("lrnn", "paper", activation="spder")``. The model maps ``(N, 2) -> (N, 1)``.
    """
    key = name.lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; expected one of {sorted(_REGISTRY)}")
    cls, cfg_cls = _REGISTRY[key]
    if isinstance(preset, str):
        cfg = get_preset(key, preset).config
    elif isinstance(preset, Preset):
        cfg = preset.config
    elif isinstance(preset, dict):
        cfg = cfg_cls(**preset)
    elif is_dataclass(preset):
        cfg = preset
    else:
        raise TypeError(f"preset must be a name, Preset, config or dict, got {type(preset).__name__}")
    if not isinstance(cfg, cfg_cls):
        raise TypeError(f"{type(cfg).__name__} is not a config for {key!r}")
    return cls(replace(cfg, **overrides))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of real parameters (a complex entry counts as 2); frozen ones too unless ``trainable_only``."""
    return sum(
        p.numel() * (2 if p.is_complex() else 1)
        for p in model.parameters()
        if p.requires_grad or not trainable_only
    )
