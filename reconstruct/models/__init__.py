"""Coordinate networks mapping ``(N, 2)`` coordinates in ``[-1, 1]^2`` to ``(N, 1)`` values.

Models: :class:`LRNN` (learnable product-structured activations), :class:`WIRE` (complex Gabor
wavelets) and :class:`SIREN` (sine MLP). Use :func:`build_model` with a preset name
(``preview`` / ``paper`` / ``quality``), a :class:`Preset`, a config dataclass or a dict.
"""

from sparsect.lazy_exports import lazy_exports

#: submodule -> the public names it defines (imported on first use)
_EXPORTS = {
    "build": ["build_model", "count_parameters"],
    "configs": ["ACTIVATIONS", "LRNNConfig", "SIRENConfig", "WIREConfig"],
    "lrnn": ["LRNN", "LRNNLayer", "lrnn_parameter_count"],
    "presets": ["MODELS", "PRESET_NAMES", "OptimConfig", "Preset", "get_preset", "list_presets"],
    "siren": ["SIREN", "siren_parameter_count"],
    "wire": ["WIRE", "wire_parameter_count"],
}
lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
