"""Physics of 2D CT: geometries, the differentiable Radon transform and FBP filters (torch only)."""

from sparsect.lazy_exports import lazy_exports

#: submodule -> the public names it defines (imported on first use)
_EXPORTS = {
    "backends": ["BACKENDS", "astra_available"],
    "filters": ["FILTERS", "filter_sinogram", "ramp_response"],
    "geometry": ["FanBeam", "Geometry", "ParallelBeam", "evenly_spaced_angles"],
    "progress": [
        "MatrixBuildStopped", "PhaseProgress", "PhaseStopped", "StopLike", "phase_reporting", "stop_requested",
    ],
    "radon": ["Radon"],
    "rays": ["PIXEL_MODELS"],
    "system_matrix": ["system_matrix"],
}
lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
