"""TV's default weight with and without the scan's noise level, against a grid of fixed weights.

Run as ``python benchmarks/tv_default_check.py [--size 256] [--views 60] [--threads 1]``. For each sample and
photon count (noise-free, 1e5, 3e4, 1e4) it prints the PSNR of ``classical.tv`` with the noise-blind default
(``photons=None``), with the noise-aware default (``photons`` given, ``math.inf`` when noise-free; the factor
it chose relative to the noise-blind one in brackets) and with 0.25, 1, 4 and 16 times the noise-blind weight.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data  # noqa: E402
from reconstruct import classical, metrics  # noqa: E402

FACTORS = (0.25, 1, 4, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = " | ".join(f"x{f:g}" for f in FACTORS)
    print(f"| sample | photons | noise-blind default | noise-aware default (factor) | {grid} |")
    print("|---|---:|---:|---:|" + "---:|" * len(FACTORS))
    for sample in ("head_693", "ct_small", "shepp_logan"):
        ct = data.load_sample(sample, args.size)
        for photons in (0, 1e5, 3e4, 1e4):
            sim = data.simulate(ct, args.views, photons=photons or None, seed=0)

            def psnr(sim=sim, **options) -> tuple[float, classical.Reconstruction]:
                result = classical.tv(sim.sinogram, sim.geometry, pixel_size_mm=sim.pixel_size_mm, **options)
                return metrics.compare(result.image_hu, sim.reference_hu)["psnr"], result

            base = float(classical.default_tv_lambda(sim.sinogram, sim.geometry))
            fixed = [psnr(lam=base * f)[0] for f in FACTORS]
            blind = psnr()[0]
            aware, result = psnr(photons=photons or math.inf)
            cells = " | ".join(f"{p:.2f}" for p in fixed)
            print(f"| {sample} | {photons:g} | {blind:.2f} | {aware:.2f} (x{result.parameters['lam'] / base:.2f}) | "
                  f"{cells} |", flush=True)


if __name__ == "__main__":
    main()
