"""Named presets (``preview`` / ``paper`` / ``quality``) for each coordinate network.

A :class:`Preset` bundles the model hyper-parameters with an optimiser recipe
(:class:`OptimConfig`) and the problem size it was tuned for. ``preview`` is sized for a
128x128 fit on a 2-core CPU in under a minute; ``paper`` matches the ~180k-parameter WIRE
CT configuration (256x256, 100 views, 5000 iterations); ``quality`` spends a larger budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .lrnn import LRNNConfig
from .siren import SIRENConfig
from .wire import WIREConfig

ModelConfig = LRNNConfig | WIREConfig | SIRENConfig


@dataclass(frozen=True)
class OptimConfig:
    """Adam recipe: linear warm-up for ``warmup`` steps, then exponential decay from ``lr`` to
    ``lr * final_lr_factor`` at ``iterations`` (WIRE's ``0.1 ** (t / T)`` schedule)."""

    lr: float = 1e-3
    iterations: int = 1000
    warmup: int = 0
    final_lr_factor: float = 0.1

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at ``step`` (0-based); suitable for ``torch.optim.lr_scheduler.LambdaLR``."""
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        span = max(self.iterations - self.warmup, 1)
        t = min(max(step - self.warmup, 0) / span, 1.0)
        return math.exp(t * math.log(self.final_lr_factor))


@dataclass(frozen=True)
class Preset:
    """Model hyper-parameters + optimiser recipe + the problem size it targets."""

    model: str
    name: str
    config: ModelConfig
    optim: OptimConfig
    image_size: int = 128
    n_views: int | None = None
    notes: str = field(default="", compare=False)


_PRESETS: dict[tuple[str, str], Preset] = {}


def _add(p: Preset) -> None:
    _PRESETS[(p.model, p.name)] = p


# --- LRNN -------------------------------------------------------------------------------------
# preview: tuned on Shepp-Logan 128^2 / 60 views, 300 iterations (docs/BENCHMARKS.md): rank 32 with w0 = 10 and
# lr 1e-2 reached 33.5 dB where the 1.8k-parameter rank-16 net with w0 = 30, lr 2e-3 stayed at 21 dB; lr 0.1 then
# gained 2.6-3.7 dB on CT_small, Shepp-Logan and head_693 (60 views), while lr 0.3 fails (16-19 dB).
_add(Preset("lrnn", "preview", LRNNConfig(depth=2, rank=32, proj_dim=4, width=4, w0=10.0),
            OptimConfig(lr=1e-1, iterations=300, warmup=20, final_lr_factor=0.1),
            image_size=128, notes="8,097 params"))
# paper / quality: w0 = 10 and lr 0.1, picked on a CPU proxy of the paper problem (head_693 64^2, 25 views, 600
# iterations; benchmarks/tune_preset.py, docs/BENCHMARKS.md): 40.74 dB where the untuned w0 = 30, lr 1e-3 reached
# 29.32 dB (WIRE's paper settings: 30.75 dB); lr 0.3 fails (17.14 dB). Not yet confirmed at 256^2 on a GPU.
_add(Preset("lrnn", "paper", LRNNConfig(depth=3, rank=65, proj_dim=16, width=4, w0=10.0),
            OptimConfig(lr=1e-1, iterations=5000, warmup=100, final_lr_factor=0.1),
            image_size=256, n_views=100, notes="181,416 params (WIRE paper config: 181,692)"))
_add(Preset("lrnn", "quality", LRNNConfig(depth=3, rank=96, proj_dim=16, width=8, w0=10.0),
            OptimConfig(lr=1e-1, iterations=10000, warmup=200, final_lr_factor=0.05),
            image_size=256, n_views=100))

# --- WIRE -------------------------------------------------------------------------------------
# preview: 44 complex features = 8,148 parameters, the size of LRNN's preview (8,097), so the two compare at an
# equal parameter count and budget.
_add(Preset("wire", "preview", WIREConfig(hidden_features=44),
            OptimConfig(lr=5e-3, iterations=300, warmup=0, final_lr_factor=0.1), image_size=128,
            notes="8,148 params"))
_add(Preset("wire", "paper", WIREConfig(),
            OptimConfig(lr=5e-3, iterations=5000, warmup=0, final_lr_factor=0.1),
            image_size=256, n_views=100, notes="181,692 real params"))
_add(Preset("wire", "quality", WIREConfig(),
            OptimConfig(lr=5e-3, iterations=10000, warmup=0, final_lr_factor=0.1),
            image_size=256, n_views=100))

# --- SIREN ------------------------------------------------------------------------------------
# preview: w0 = 15 and lr 1e-3 measured 23.5 / 32.8 dB (Shepp-Logan / CT_small, 128^2, 30 views) where the
# standard w0 = 30, lr 1e-4 reached 20.4 / 21.2 dB in 300 iterations (docs/BENCHMARKS.md).
_add(Preset("siren", "preview", SIRENConfig(hidden_features=64, hidden_layers=2, w0=15.0),
            OptimConfig(lr=1e-3, iterations=300, warmup=0, final_lr_factor=0.1), image_size=128))
_add(Preset("siren", "paper", SIRENConfig(hidden_features=256, hidden_layers=2),
            OptimConfig(lr=1e-4, iterations=5000, warmup=0, final_lr_factor=0.1),
            image_size=256, n_views=100, notes="132,609 params"))
_add(Preset("siren", "quality", SIRENConfig(hidden_features=256, hidden_layers=3),
            OptimConfig(lr=1e-4, iterations=10000, warmup=0, final_lr_factor=0.1),
            image_size=256, n_views=100))

MODELS = ("lrnn", "wire", "siren")
PRESET_NAMES = ("preview", "paper", "quality")


def get_preset(model: str, name: str = "preview") -> Preset:
    """Return the preset ``name`` of ``model`` (case-insensitive names)."""
    key = (model.lower(), name.lower())
    if key not in _PRESETS:
        raise KeyError(f"no preset {name!r} for model {model!r}; available: {sorted(_PRESETS)}")
    return _PRESETS[key]


def list_presets() -> list[tuple[str, str]]:
    """All ``(model, preset)`` pairs."""
    return sorted(_PRESETS)
