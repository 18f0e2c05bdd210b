"""How close the time estimates (reconstruct/estimate.py) come to the measured times, under the honest simulation.

Usage (from the repository root)::

    python benchmarks/estimate_accuracy.py --sizes 128 256 --methods fbp tv lrnn wire siren
    python benchmarks/estimate_accuracy.py --sizes 128 --iterations 20    # networks on a 20-step budget

For each ``--sizes`` grid, simulates the sample's scan (``data.simulate``, honest) and, per method, prints the
estimate (this machine's calibration, measured first if the cache has none), the measured time of
``registry.run`` and their ratio. Each method runs as it would alone: the projector matrices and operator norms
cached by the methods before it are dropped first. ``--iterations`` sets the networks' budget (the classical
methods keep their defaults). Times depend on the machine's load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import time

import sparsect  # noqa: F401 - before torch: sets the OpenMP wait policy unless the user chose one
from sparsect.app import scans, settings
from sparsect.operators.system_matrix import MATRICES
from sparsect.reconstruct import calibration, estimate, registry, solver_common


def _forget_caches() -> None:
    """Drop the projector matrices and operator norms earlier runs cached (a method's estimate includes them)."""
    MATRICES.clear()
    solver_common._NORM_CACHE.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="head_693")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--photons", type=float, default=None)
    parser.add_argument("--methods", nargs="+", default=["fbp", "tv", "lrnn", "wire", "siren"])
    parser.add_argument("--variant", default="recommended")
    parser.add_argument("--preset", default="preview")
    parser.add_argument("--iterations", type=int, default=None, help="the networks' budget (default: the preset's)")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args()
    networks = [(m, args.preset) for m in args.methods if registry.method(m).is_network]
    start = time.perf_counter()
    rates = calibration.machine_calibration("cpu", networks)
    print(f"calibration ({calibration.cache_file()}): {time.perf_counter() - start:.1f} s", flush=True)
    for size in args.sizes:
        ct = scans.load_input(args.sample, size=size)
        scan = scans.simulate(ct, settings.scan_settings(views=args.views, photons=args.photons, size=size))
        for method in args.methods:
            iterations = args.iterations if registry.method(method).is_network else None
            estimated = estimate.estimate_seconds(method, scan.image_size, args.views, iterations, args.preset,
                                                  args.variant, calibration=rates)
            _forget_caches()
            start = time.perf_counter()
            registry.run(method, scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm,
                         iterations=iterations, preset=args.preset, variant=args.variant, photons=scan.photons,
                         device="cpu")
            measured = time.perf_counter() - start
            row = {"sample": args.sample, "size": size, "views": args.views, "method": method,
                   "iterations": iterations, "estimated": round(estimated, 2), "measured": round(measured, 2),
                   "ratio": round(estimated / measured, 3)}
            print(json.dumps(row) if args.json else
                  f"{method:6s} {size:4d}²  estimated {estimated:8.1f} s ({estimate.format_duration(estimated):>12s})"
                  f"  measured {measured:8.1f} s  ratio {estimated / measured:5.2f}", flush=True)


if __name__ == "__main__":
    main()
