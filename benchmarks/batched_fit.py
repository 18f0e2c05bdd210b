"""Seconds per slice when B slices' networks are fitted side by side (reconstruct.fit with B models).

Run as ``python benchmarks/batched_fit.py --device cpu --size 128 --batches 1 4``. For each model
(``--models``, preview presets) and each batch size it fits B copies of a Shepp-Logan sinogram
(``--views`` views) for ``--iterations`` iterations and prints wall seconds per slice, the speed-up
over B = 1, and peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: not measured). A
markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import time

import torch

from sparsect import data
from sparsect.app import scans, settings
from sparsect.reconstruct.neural import reconstruct_neural


def measure(method: str, sinogram: torch.Tensor, geometry, batch: int, iterations: int, device: str
            ) -> tuple[float, int | None]:
    """(wall seconds per slice, peak bytes or None) of one fit of ``batch`` copies of ``sinogram``."""
    stack = sinogram.reshape(1, 1, *geometry.sinogram_shape).expand(batch, -1, -1, -1).contiguous()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = reconstruct_neural(method, stack if batch > 1 else stack[0, 0], geometry, iterations=iterations,
                                device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / batch, result.peak_memory_bytes if device.startswith("cuda") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lrnn", "wire", "siren"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = settings.parse_device(args.device)
    ct = data.load_sample("shepp_logan", args.size)
    simulation = scans.simulate(ct, settings.ScanSettings(views=args.views))
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; {args.size}x{args.size}, {args.views} views, {args.iterations} iterations, preview presets\n")
    print(f"| model | B | s / slice | speed-up vs B={args.batches[0]} | peak MB |")
    print("|---|---:|---:|---:|---:|")
    for method in args.models:
        measure(method, simulation.sinogram, simulation.geometry, 1, 3, device)  # warm-up (caches, kernels)
        base = None
        for batch in args.batches:
            seconds, peak = measure(method, simulation.sinogram, simulation.geometry, batch, args.iterations, device)
            base = base or seconds
            peak_text = f"{peak / 2**20:.0f}" if peak is not None else "-"
            print(f"| {method} | {batch} | {seconds:.3f} | {base / seconds:.2f}x | {peak_text} |", flush=True)


if __name__ == "__main__":
    main()
