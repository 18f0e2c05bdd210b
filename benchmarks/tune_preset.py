"""Grid search of a network preset's settings on a small proxy problem (CPU-sized), PSNR/SSIM per setting.

Run as::

    python benchmarks/tune_preset.py --model lrnn --preset paper --size 64 --views 25 --iterations 600 \\
        --grid w0=10,30 lr=1e-3,1e-2 [--sample head_693] [--variant fbp_init] [--threads 2]

Every combination of the ``--grid`` values (model config fields such as ``w0``, ``rank``; optimiser fields
``lr``, ``warmup``, ``final_lr_factor``) replaces the preset's value; the first row is the preset unchanged
unless ``--no-base``.
The problem is ``data.load_sample(sample)`` simulated noise-free onto a size x size grid with ``views``
views (the honest simulation, as in ``benchmarks/quality.py``); metrics as there. Use it to pick settings
for a budget too large to sweep (a GPU preset) on a problem of the same shape ratio; the chosen values
still have to be confirmed at full size.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import torch

from sparsect import data
from sparsect.reconstruct import metrics
from sparsect.reconstruct.models.presets import OptimConfig, get_preset
from sparsect.reconstruct.neural import reconstruct_neural

OPTIM_FIELDS = {f.name for f in dataclasses.fields(OptimConfig)}


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_grid(items: list[str]) -> list[dict]:
    """``["w0=10,30", "lr=1e-3"]`` -> every combination as a dict."""
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        if not values:
            raise SystemExit(f"--grid entries look like key=v1,v2; got {item!r}")
        axes.append([(key, _value(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def with_settings(preset, settings: dict):
    """The preset with ``settings`` replacing its config / optimiser fields."""
    optim = {k: v for k, v in settings.items() if k in OPTIM_FIELDS}
    config = {k: v for k, v in settings.items() if k not in OPTIM_FIELDS}
    unknown = set(config) - {f.name for f in dataclasses.fields(preset.config)}
    if unknown:
        raise SystemExit(f"unknown settings {sorted(unknown)} for {preset.model}")
    return dataclasses.replace(preset, config=dataclasses.replace(preset.config, **config),
                               optim=dataclasses.replace(preset.optim, **optim))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lrnn")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--sample", default="head_693")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--views", type=int, default=25)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--variant", nargs="*", default=None,
                        help="reconstruct_neural variants applied to every row (e.g. fbp_init tv)")
    parser.add_argument("--grid", nargs="*", default=[])
    parser.add_argument("--no-base", action="store_true", help="skip the row of the preset as is")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = get_preset(args.model, args.preset)
    simulation = data.simulate(data.load_sample(args.sample), args.views, seed=0, size=args.size)  # as quality.py
    variants = f" + {', '.join(args.variant)}" if args.variant else ""
    print(f"{args.model} {args.preset}{variants}, {args.sample} {args.size}² {args.views} views, {args.iterations} "
          f"iterations, {torch.get_num_threads()} threads")
    print("| settings | PSNR dB | SSIM | final loss | seconds |\n|---|---:|---:|---:|---:|")
    grid = parse_grid(args.grid)
    rows = grid if args.no_base else [{}] + [g for g in grid if g]
    for settings in rows:
        start = time.perf_counter()
        result = reconstruct_neural(args.model, simulation.sinogram, simulation.geometry,
                                    pixel_size_mm=simulation.pixel_size_mm, preset=with_settings(base, settings),
                                    iterations=args.iterations, device=args.device, seed=0,
                                    variant=args.variant)
        scores = metrics.compare(result.image_hu, simulation.reference_hu)
        label = ", ".join(f"{k}={v}" for k, v in settings.items()) or "preset as is"
        print(f"| {label} | {scores['psnr']:.2f} | {scores['ssim']:.4f} | {result.curve[-1]:.3g} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
