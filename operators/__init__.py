"""Physics of 2D CT: geometries, the differentiable Radon transform and FBP filters (torch only)."""

from sparsect.operators.backends import BACKENDS, astra_available
from sparsect.operators.filters import FILTERS, filter_sinogram, ramp_response
from sparsect.operators.geometry import FanBeam, Geometry, ParallelBeam, evenly_spaced_angles
from sparsect.operators.progress import (
    MatrixBuildStopped,
    PhaseProgress,
    PhaseStopped,
    StopLike,
    phase_reporting,
    stop_requested,
)
from sparsect.operators.radon import Radon
from sparsect.operators.rays import PIXEL_MODELS
from sparsect.operators.system_matrix import system_matrix

__all__ = [
    "BACKENDS", "FILTERS", "PIXEL_MODELS", "FanBeam", "Geometry", "MatrixBuildStopped", "ParallelBeam",
    "PhaseProgress", "PhaseStopped", "Radon", "StopLike", "astra_available", "evenly_spaced_angles", "filter_sinogram",
    "phase_reporting", "ramp_response", "stop_requested", "system_matrix",
]
