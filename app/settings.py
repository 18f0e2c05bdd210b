"""What a person asked for, parsed once at the edge (CLI flags, page widgets, batch options) into frozen
settings objects, with every error found before any work starts. The layers below trust them.

Errors are :class:`InputError` with a one-line message that names the option and what to change.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from sparsect import data
from sparsect.reconstruct import checks, registry


class InputError(ValueError):
    """Settings or input the pipeline cannot use; the message says what and how to fix it."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """" (did you mean 'ct_small'?)" when ``name`` is close to one of ``choices``, else ""."""
    close = difflib.get_close_matches(str(name).strip().lower(), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _split(values: str | Iterable[str]) -> tuple[list[str], list[str]]:
    """(the raw items, the lower-cased names in them) of repeated and/or comma-separated option values."""
    items = [values] if isinstance(values, str) else [str(v) for v in values]
    return items, [name.strip().lower() for item in items for name in item.split(",") if name.strip()]


def parse_methods(values: str | Iterable[str]) -> tuple[str, ...]:
    """Method names from repeated and/or comma-separated options, validated, order kept, no repeats."""
    _, names = _split(values)
    unknown = [name for name in dict.fromkeys(names) if name not in registry.METHODS]
    if unknown:
        raise InputError(f"unknown method {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], registry.METHODS)}; "
                         f"choose from {', '.join(registry.METHODS)}")
    if not names:
        raise InputError(f"no method given; choose from {', '.join(registry.METHODS)}")
    return tuple(dict.fromkeys(names))


def recommended_variants() -> tuple[str, ...]:
    """The variants networks fit with unless told otherwise, in canonical form: ``("recommended",)``, each
    network's own set (:data:`sparsect.reconstruct.registry.RECOMMENDED_VARIANTS`)."""
    return registry.canonical_variants(registry.RECOMMENDED)


def parse_variants(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Network fit variants from repeated and/or comma-separated names, in canonical form (the sorted
    names, ``("paper",)`` for the published formulation: what ``parameters["variant"]`` records).

    ``None`` gives :func:`recommended_variants`; an empty list (no option ticked) gives ``("paper",)``;
    option text that holds no name at all is an error.
    """
    if values is None:
        return recommended_variants()
    items, names = _split(values)
    if items and not names:
        raise InputError(f"no variant given; choose from {', '.join(registry.VARIANT_NAMES)}")
    try:
        return registry.canonical_variants(names)
    except ValueError as error:
        raise InputError(str(error)) from None


def parse_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is present, else "cpu"; validates "cpu", "cuda" and "cuda:N"."""
    from sparsect.reconstruct.device import resolve_device  # loads torch

    try:
        return str(resolve_device(device))
    except ValueError as error:
        raise InputError(str(error)) from None


def check_iterations(iterations: int | None, option: str = "--iterations") -> int | None:
    """None (each method's default) or a whole number >= 1."""
    if iterations is None:
        return None
    try:
        return checks.check_iterations(iterations)
    except (ValueError, TypeError):
        raise InputError(f"{option} must be at least 1 (leave it out for each method's default), got {iterations}"
                         ) from None


@dataclass(frozen=True)
class MethodSettings:
    """How each method runs: iteration budget (None: the method's default; see
    :mod:`sparsect.reconstruct.registry` for what an iteration is), network preset, seed, resolved device
    ("cpu", "cuda:0", ...) and network fit variants (canonical form; ignored by the classical methods)."""

    iterations: int | None = None
    preset: str = "preview"
    seed: int = 0
    device: str = "cpu"
    variant: tuple[str, ...] = field(default_factory=recommended_variants)


def method_settings(iterations: int | None = None, preset: str = "preview", variant: str | Iterable[str] | None = None,
                    seed: int = 0, device: str = "auto") -> MethodSettings:
    """Validated :class:`MethodSettings` (``variant`` None: the recommended ones)."""
    if preset not in registry.PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(registry.PRESETS)}")
    return MethodSettings(iterations=check_iterations(iterations), preset=preset, seed=int(seed),
                          device=parse_device(device), variant=parse_variants(variant))


#: The simulations a scan can be made with (see :func:`sparsect.data.simulate`): "honest" by default,
#: "same-grid" (the inverse crime) only when asked for by name.
SIMULATIONS = tuple(data.SIMULATIONS)
BEAMS = ("parallel", "fan")


@dataclass(frozen=True)
class ScanSettings:
    """How the sparse-view scan is simulated from a slice: views over ``arc`` (radians; None: a half turn for
    parallel beams, a full turn for fan beams), photons per ray (None: noise-free), electronic noise
    (standard deviation in photons), detector bins (None: covers the image diagonal), noise seed, the kind of
    ``beam`` ("parallel" or "fan"), the simulation ("honest" or "same-grid"), the working grid ``size``
    the methods reconstruct on (None: the slice's own) and, for fan beams, the source and detector
    distances from the rotation centre in mm (None: twice and once the image diagonal)."""

    views: int = 60
    arc: float | None = None
    photons: float | None = None
    electronic_noise: float = 0.0
    det_count: int | None = None
    seed: int = 0
    beam: str = "parallel"
    simulation: str = "honest"
    size: int | None = None
    source_distance_mm: float | None = None
    detector_distance_mm: float | None = None

    def __post_init__(self) -> None:
        if self.arc is None:  # a fan beam needs more than a half turn; a full one needs no short-scan weights
            object.__setattr__(self, "arc", 2 * math.pi if self.beam == "fan" else math.pi)


def _check_distance(value: float | None, option: str) -> float | None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InputError(f"{option} must be a positive distance in mm, got {value}")
    return None if value is None else float(value)


def scan_settings(views: int = 60, arc: float | None = None, photons: float | None = None,
                  det_count: int | None = None, seed: int = 0, electronic_noise: float = 0.0,
                  beam: str = "parallel", simulation: str = "honest", size: int | None = None,
                  source_distance_mm: float | None = None, detector_distance_mm: float | None = None) -> ScanSettings:
    """Validated :class:`ScanSettings`."""
    if isinstance(views, bool) or int(views) != views or views < 2:
        raise InputError(f"--views must be a whole number of at least 2, got {views}")
    if photons is not None and not (photons > 0 and math.isfinite(photons)):
        raise InputError(f"--photons must be a positive number, got {photons}")
    if arc is not None and not (0 < arc <= 2 * math.pi):
        raise InputError(f"the arc must be in (0, 360] degrees, got {math.degrees(arc):g}")
    if det_count is not None and det_count < 1:
        raise InputError(f"the detector needs at least 1 bin, got {det_count}")
    if not (electronic_noise >= 0 and math.isfinite(electronic_noise)):
        raise InputError(f"electronic noise must be >= 0, got {electronic_noise}")
    if beam not in BEAMS:
        raise InputError(f"--beam must be parallel or fan, got {beam!r}")
    if simulation not in SIMULATIONS:
        raise InputError(f"--simulation must be honest or same-grid, got {simulation!r}")
    distances = (_check_distance(source_distance_mm, "--source-distance-mm"),
                 _check_distance(detector_distance_mm, "--detector-distance-mm"))
    if beam != "fan" and distances != (None, None):
        raise InputError("--source-distance-mm and --detector-distance-mm need --beam fan")
    return ScanSettings(views=int(views), arc=None if arc is None else float(arc), photons=photons,
                        electronic_noise=float(electronic_noise), det_count=det_count, seed=int(seed),
                        beam=beam, simulation=simulation, size=None if size is None else int(size),
                        source_distance_mm=distances[0], detector_distance_mm=distances[1])
