"""TV weight sweep: PSNR of ``classical.tv`` for multiples of the default weight, per sample, size, views
and photon count, next to the noise the Poisson model gives (:func:`reconstruct.classical.poisson_noise_std`):
the data the noise-aware default weight was fitted to.

Run as ``python benchmarks/tv_lambda.py [--sizes 128 256] [--views 30 60 100] [--photons 0 1e5 1e4]
[--factors 0.25 0.5 1 2 4 8 16] [--samples head_693 ct_small shepp_logan] [--simulation honest|same-grid]
[--threads 2]``. Each sample is simulated from its own pixels onto the size x size working grid, as in
``benchmarks/quality.py``. Prints one markdown
row per case: the noise level, PSNR at each factor of the noise-blind ``default_tv_lambda``, the best factor,
and PSNR with the noise-blind default and with the noise-aware one (``photons`` given, ``math.inf`` when
noise-free; in brackets the factor it chose relative to the noise-blind weight).
"""

from __future__ import annotations

import argparse
import math

import torch

from sparsect import data
from sparsect.reconstruct import classical, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--views", type=int, nargs="+", default=[30, 60, 100])
    parser.add_argument("--photons", type=float, nargs="+", default=[0.0, 1e5, 1e4])
    parser.add_argument("--factors", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 4, 8, 16])
    parser.add_argument("--samples", nargs="+", default=["head_693", "ct_small", "shepp_logan"])
    parser.add_argument("--simulation", default="honest", choices=list(data.SIMULATIONS),
                        help="honest (default) or same-grid (the inverse crime, as the older tables)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    factors = "| ".join(f"x{f:g} " for f in args.factors)
    print(f"| sample | size | views | photons | noise std | {factors}| best | noise-blind default | "
          f"noise-aware default (factor) |")
    print("|---|---:|---:|---:|---:|" + "---:|" * (len(args.factors) + 3))
    for sample in args.samples:
        for size in args.sizes:
            ct = data.load_sample(sample)  # native pixels: the honest simulation scans them (as quality.py)
            for views in args.views:
                for photons in args.photons:
                    sim = data.simulate(ct, views, photons=photons or None, seed=0, size=size,
                                        simulation=args.simulation)

                    def psnr(sim=sim, **options) -> tuple[float, classical.Reconstruction]:
                        result = classical.tv(sim.sinogram, sim.geometry, pixel_size_mm=sim.pixel_size_mm, **options)
                        return metrics.compare(result.image_hu, sim.reference_hu)["psnr"], result

                    base = float(classical.default_tv_lambda(sim.sinogram, sim.geometry))
                    noise = float(classical.poisson_noise_std(sim.sinogram, photons)[0]) if photons else 0.0
                    scores = [psnr(lam=base * factor)[0] for factor in args.factors]
                    blind = psnr()[0]
                    aware, result = psnr(photons=photons or math.inf)
                    best = args.factors[max(range(len(scores)), key=scores.__getitem__)]
                    cells = " | ".join(f"{s:.2f}" for s in scores)
                    print(f"| {sample} | {size} | {views} | {photons:g} | {noise:.2e} | {cells} | x{best:g} | "
                          f"{blind:.2f} | {aware:.2f} (x{result.settings['lam'] / base:.2f}) |", flush=True)

if __name__ == "__main__":
    main()
