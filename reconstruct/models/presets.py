"""Named presets (``preview`` / ``paper`` / ``quality``) for each coordinate network.

A :class:`Preset` bundles the model hyper-parameters with an optimiser recipe
(:class:`OptimConfig`) and the problem size it was tuned for. ``preview`` is sized for a
128x128 fit on a small CPU (docs/BENCHMARKS.md); ``paper`` matches the ~180k-parameter WIRE
CT configuration (256x256, 100 views, 5000 iterations); ``quality`` spends a larger budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .configs import LRNNConfig, SIRENConfig, WIREConfig

ModelConfig = LRNNConfig | WIREConfig | SIRENConfig


@dataclass(frozen=True)
class OptimConfig:
    """Adam recipe: linear warm-up for ``warmup`` steps, then exponential decay from ``lr`` to
    ``lr * final_lr_factor`` at ``iterations`` (WIRE's ``0.1 ** (t / T)`` schedule)."""

    lr: float = 1e-3
    iterations: int = 1000
    warmup: int = 0
    final_lr_factor: float = 0.1


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
# preview: sized for a 128^2 fit on a small CPU; rank, w0 and lr tuned on the bundled samples
# (docs/BENCHMARKS.md, "Tuning notes").
_add(Preset("lrnn", "preview", LRNNConfig(depth=2, rank=32, proj_dim=4, width=4, w0=10.0),
            OptimConfig(lr=1e-1, iterations=300, warmup=20, final_lr_factor=0.1),
            image_size=128, notes="8,097 params"))
# paper / quality: WIRE's CT size; w0 and lr picked on a CPU proxy of the paper problem (docs/BENCHMARKS.md,
# "Tuning notes"), not yet confirmed at 256^2 on a GPU.
_add(Preset("lrnn", "paper", LRNNConfig(depth=3, rank=65, proj_dim=16, width=4, w0=10.0),
            OptimConfig(lr=1e-1, iterations=5000, warmup=100, final_lr_factor=0.1),
            image_size=256, n_views=100, notes="181,416 params (WIRE paper config: 181,692)"))
_add(Preset("lrnn", "quality", LRNNConfig(depth=3, rank=96, proj_dim=16, width=8, w0=10.0),
            OptimConfig(lr=1e-1, iterations=10000, warmup=200, final_lr_factor=0.05),
            image_size=256, n_views=100))

# --- WIRE -------------------------------------------------------------------------------------
# preview: 44 complex features = 8,148 parameters, the size of LRNN's preview (8,097), so the two compare at an
# equal parameter count and budget; w0 and lr retuned under the honest simulation (docs/BENCHMARKS.md, "Tuning notes").
_add(Preset("wire", "preview", WIREConfig(hidden_features=44, w0=5.0),
            OptimConfig(lr=2e-2, iterations=300, warmup=0, final_lr_factor=0.1), image_size=128,
            notes="8,148 params"))
_add(Preset("wire", "paper", WIREConfig(),
            OptimConfig(lr=5e-3, iterations=5000, warmup=0, final_lr_factor=0.1),
            image_size=256, n_views=100, notes="181,692 real params"))
_add(Preset("wire", "quality", WIREConfig(),
            OptimConfig(lr=5e-3, iterations=10000, warmup=0, final_lr_factor=0.1),
            image_size=256, n_views=100))

# --- SIREN ------------------------------------------------------------------------------------
# preview: w0 and lr retuned for the 300-iteration budget under the honest simulation (docs/BENCHMARKS.md,
# "Tuning notes").
_add(Preset("siren", "preview", SIRENConfig(hidden_features=64, hidden_layers=2, w0=15.0),
            OptimConfig(lr=3e-3, iterations=300, warmup=0, final_lr_factor=0.1), image_size=128))
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
