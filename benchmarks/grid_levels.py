"""Network fits on two grids against one grid and TV, under the honest simulation.

Usage (from the repository root)::

    python benchmarks/grid_levels.py --size 256 --views 60 --coarse 128 --fine 0 20 --methods tv lrnn
    python benchmarks/grid_levels.py --size 512 --views 60 --photons 1e5 --coarse 128 256 --fine 0 10

Simulates the sample's scan (``data.simulate``, honest: a finer grid, another pixel model, detector sub-rays) at
``--size`` and reconstructs it with each method; a network runs its recommended fit (``--variant``) once per
``--coarse`` grid and ``--fine`` step count (``FitConfig.coarse_grid``, ``fine_iterations``; ``--coarse 0``: the
scan's own grid throughout). Prints one line per run: PSNR over the CT range inside the circle
(``psnr_range``) and SSIM over it (``ssim_range``), seconds. Quality numbers are deterministic; times depend on the
machine's load.
"""

from __future__ import annotations

import argparse
import json
import time

import sparsect  # noqa: F401 - before torch: sets the OpenMP wait policy unless the user chose one
from sparsect.app import run, scans, settings
from sparsect.reconstruct import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="head_693")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--photons", type=float, default=None)
    parser.add_argument("--methods", nargs="+", default=["tv", "lrnn"])
    parser.add_argument("--variant", default="recommended")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--coarse", type=int, nargs="+", default=[128])
    parser.add_argument("--fine", type=int, nargs="+", default=[0])
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args()
    ct = scans.load_input(args.sample, size=args.size)
    scan = scans.simulate(ct, settings.scan_settings(views=args.views, photons=args.photons, size=args.size))
    photons = scan.photons
    for method in args.methods:
        spec = registry.method(method)
        grids = [(c, f) for c in args.coarse for f in (args.fine if c else [0])] if spec.is_network else [(0, 0)]
        for coarse, fine in grids:
            fields = {"coarse_grid": coarse or None, "fine_iterations": fine} if spec.is_network else None
            start = time.perf_counter()
            result = registry.run(method, scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm,
                                  iterations=args.iterations, variant=args.variant, photons=photons, device="cpu",
                                  fit_fields=fields)
            seconds = time.perf_counter() - start
            scores = run.score(result.image_hu, scan.reference_hu)
            row = {"sample": args.sample, "size": args.size, "views": args.views, "photons": args.photons,
                   "method": method, "coarse": coarse, "fine": fine, "psnr_range": round(scores["psnr_range"], 3),
                   "ssim_range": round(scores["ssim_range"], 4), "seconds": round(seconds, 1)}
            print(json.dumps(row) if args.json else
                  f"{method:6s} coarse {coarse:4d} fine {fine:4d}  psnr_range {row['psnr_range']:7.3f}  "
                  f"ssim_range {row['ssim_range']:.4f}  {seconds:7.1f} s", flush=True)


if __name__ == "__main__":
    main()
