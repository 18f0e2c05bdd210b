"""Which TV blend suits a coordinate network: every share of a grid scored against TV, on saved reconstructions.

Usage (from the repository root)::

    python benchmarks/blend_shares.py --images DIR [--samples head_693 ct_small] [--views 30 60]
                                      [--photons 0 1e5] [--size 128] [--network lrnn+ensemble+fbp_init+ramp_loss]
                                      [--coarse 0 0.125 ...] [--fine 0.5 0.625 ...] [--cutoff 0.125 0.25 ...]
                                      [--transition 0.5 1] [--iterations N] [--ensemble-size K] [--seed S]
                                      [--fit FIELD=VALUE] [--model FIELD=VALUE] [--threads N] [--top 10]
    python benchmarks/blend_shares.py --combine DIR=WEIGHT DIR=WEIGHT ... [--network lrnn] [...]

Each cell (sample, views, photons) is simulated as in ``benchmarks/quality.py`` (honest simulation, seed 0) and
reconstructed once by TV (its noise-aware default) and by the network (``NETWORK+VARIANT...``, no blend variant,
fitted as ``benchmarks/quality.py`` fits it: the ``preview`` preset, ``--seed`` (default 0), ``--iterations``,
``--ensemble-size``, ``--fit``, ``--model``). The two images and the reference are kept in ``DIR`` (one NPZ per
cell and network, written whole or not at all) and reused by later runs, so a grid can be rescreened without
refitting (empty ``DIR`` after changing the fit).

Every blend of the grid is then scored in every cell: the plain means (``tv_blend`` with shares 0, 0.1, ..., 1)
and the blends by frequency band (``band_blend``: :func:`sparsect.reconstruct.blend.band_response` with each
coarse share, fine share, cutoff in cycles per pixel and transition in octaves). The first table ranks the blends
by their mean margin over TV in ``psnr_range`` (dB) over the cells, with the smallest margin and the cells that
meet the LRNN goal (+1 dB and +0.01 ``ssim_range``); the rows of the network's own ``band_blend`` settings
(:data:`sparsect.reconstruct.neural.BAND_BLEND_SHARES`) and of the plain half follow the top rows whatever their
rank. The second gives each cell's margins for the best blend, the network's own and the plain half, and the cell's
own best blend of the grid: an oracle (it is chosen with the reference), so the mean of those is the ceiling of any
rule that would choose the shares per image from the grid.

``--combine`` fits nothing: each cell's network image is the weighted mean of the network images saved in earlier
runs' ``--images`` folders (one per cell in each), e.g. a mixed ensemble of two warm-started members and one fitted
without the warm start (weights 2 and 1). ``--network`` then names only the network whose own shares are shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import quality  # benchmarks/quality.py: the same fit of a method name and the same network options
import torch

from sparsect import data
from sparsect.reconstruct import blend, metrics, neural, registry

#: The LRNN goal per cell: at least this margin over TV in psnr_range (dB) and in ssim_range.
GOAL_PSNR, GOAL_SSIM = 1.0, 0.01


def cell_images(directory: Path, sample: str, views: int, photons: float, size: int,
                network: str) -> dict[str, np.ndarray]:
    """``reference``, ``tv`` and ``network`` HU images (float64, (size, size)) of one cell, fitted once and then
    read from ``directory``."""
    path = directory / f"{sample}_{size}_{views}v_{quality.noise_label(photons)}_{network_label(network)}.npz"
    if path.exists():
        with np.load(path) as saved:
            return {name: saved[name].astype(np.float64) for name in ("reference", "tv", "network")}
    scan = data.simulate(data.load_sample(sample), views, photons=photons or None, seed=0, size=size)
    run = dict(pixel_size_mm=scan.pixel_size_mm, photons=photons or math.inf)
    images = {name: np.asarray(quality.lookup(method)(scan.sinogram, scan.geometry, **run).image_hu,
                               dtype=np.float64) for name, method in (("tv", "tv"), ("network", network))}
    images["reference"] = np.asarray(scan.reference_hu, dtype=np.float64)
    handle, staged = tempfile.mkstemp(dir=directory, suffix=".npz.part")
    with os.fdopen(handle, "wb") as file:
        np.savez(file, **images)
    os.replace(staged, path)
    return images


def combined_images(folders: dict[Path, float], sample: str, views: int, photons: float,
                    size: int) -> dict[str, np.ndarray]:
    """``reference``, ``tv`` and ``network`` of one cell with the network image the ``folders``' saved network images
    weighted (weights normalised to sum 1); each folder must hold exactly one image of the cell."""
    pattern = f"{sample}_{size}_{views}v_{quality.noise_label(photons)}_*.npz"
    total = sum(folders.values())
    images: dict[str, np.ndarray] = {}
    for folder, weight in folders.items():
        found = sorted(folder.glob(pattern))
        if len(found) != 1:
            raise SystemExit(f"--combine: {folder} holds {len(found)} images of {pattern}, not one")
        with np.load(found[0]) as saved:
            if not images:
                images = {name: saved[name].astype(np.float64) for name in ("reference", "tv")}
                images["network"] = np.zeros_like(images["reference"])
            images["network"] += weight / total * saved["network"].astype(np.float64)
    return images


def parse_combine(texts: list[str]) -> dict[Path, float]:
    """``DIR=WEIGHT`` texts as folders and positive weights; ValueError (one line) otherwise."""
    folders: dict[Path, float] = {}
    for text in texts:
        folder, _, weight = text.rpartition("=")
        try:
            value = float(weight)
        except ValueError:
            value = math.nan
        if not folder or not value > 0 or not Path(folder).is_dir():
            raise ValueError(f"--combine {text!r}: expected FOLDER=WEIGHT with a folder and a positive weight")
        folders[Path(folder)] = value
    return folders


def variant_settings(method: str, size: int) -> tuple[float, ...]:
    """Network ``method``'s "band_blend" settings on a ``size``² grid (coarse share, fine share, cutoff c/px,
    transition octaves)."""
    return dataclasses.astuple(neural.band_shares(method, (size, size)))


def network_label(network: str) -> str:
    """``network`` with its --fit and --model fields, ensemble size, seed and --iterations, for the tables and the saved
    files."""
    iterations = quality.NEURAL_BUDGET["iterations"]
    return quality.method_label(network) + (f"[iterations={iterations}]" if iterations else "")


def blend_grid(coarse: list[float], fine: list[float], cutoff: list[float], transition: list[float],
               method: str, size: int) -> dict[str, tuple[float, ...] | float]:
    """Every blend to score, by label: a plain share (float) or band settings (coarse, fine, cutoff, transition),
    the grid's and network ``method``'s own."""
    grid: dict[str, tuple[float, ...] | float] = {f"plain {share:.1f}": share for share in np.linspace(0, 1, 11)}
    for settings in (*itertools.product(coarse, fine, cutoff, transition), variant_settings(method, size)):
        grid[band_label(settings)] = settings
    return grid


def band_label(settings: tuple[float, ...]) -> str:
    """The grid's label of band settings (coarse, fine, cutoff, transition)."""
    return "band {:g}/{:g} at {:.3g} c/px, {:g} oct".format(*settings)


def margins(cell: dict[str, np.ndarray], grid: dict[str, tuple[float, ...] | float]) -> dict[str, tuple[float, float]]:
    """Each blend's (psnr_range, ssim_range) minus TV's in one cell (inscribed circle)."""
    reference, tv, network = cell["reference"], cell["tv"], cell["network"]
    rows, cols = reference.shape
    tv_scores = (metrics.psnr_range(tv, reference, "circle"), metrics.ssim_range(tv, reference, "circle"))
    out = {}
    for label, settings in grid.items():
        share = settings if np.isscalar(settings) else blend.band_response((2 * rows, 2 * cols), *settings)
        image = blend.blend(tv, network, share)
        out[label] = (float(metrics.psnr_range(image, reference, "circle") - tv_scores[0]),
                      float(metrics.ssim_range(image, reference, "circle") - tv_scores[1]))
    return out


def _arguments(argv: list[str] | None) -> tuple[argparse.Namespace, str, dict, dict]:
    """The parsed options (checked), the network, the blend grid and the runs to combine."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, help="folder of the saved reconstructions")
    parser.add_argument("--combine", nargs="+", default=[], metavar="DIR=WEIGHT",
                        help="score the weighted mean of earlier runs' saved network images instead of fitting")
    parser.add_argument("--samples", nargs="+", default=["head_693", "ct_small"])
    parser.add_argument("--views", type=int, nargs="+", default=[30, 60])
    parser.add_argument("--photons", type=float, nargs="+", default=[0.0, 1e5], help="0 = noise-free")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--network", default="lrnn+ensemble+fbp_init+ramp_loss", help="NETWORK+VARIANT[+VARIANT]")
    parser.add_argument("--coarse", type=float, nargs="+", default=[0.0, 0.125, 0.25, 0.375, 0.5])
    parser.add_argument("--fine", type=float, nargs="+", default=[0.5, 0.625, 0.75, 0.875, 1.0])
    parser.add_argument("--cutoff", type=float, nargs="+", default=[0.0884, 0.125, 0.177, 0.25, 0.354, 0.5])
    parser.add_argument("--transition", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--iterations", type=int, default=None, help="network iteration budget (default: preset)")
    quality.add_network_options(parser)
    parser.add_argument("--top", type=int, default=10, help="rows of the ranking")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    method, *variants = args.network.split("+")
    if method not in registry.NETWORK_METHODS or not set(variants) <= set(neural.VARIANTS) | {neural.ENSEMBLE}:
        parser.error(f"--network must be NETWORK+VARIANT... with a network of {registry.NETWORK_METHODS} and no "
                     "blend variant")
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    quality.NEURAL_BUDGET["iterations"] = args.iterations
    quality.apply_network_options(parser, args, [args.network])
    try:
        grid = blend_grid(args.coarse, args.fine, args.cutoff, args.transition, method, args.size)
        for settings in grid.values():
            if not np.isscalar(settings):
                blend.band_response((2, 2), *settings)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        combine = parse_combine(args.combine)
    except ValueError as exc:
        parser.error(str(exc))
    if not combine and (args.images is None or not args.images.is_dir()):
        parser.error(f"--images {args.images} is not a folder" if args.images else "give --images or --combine")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, method, grid, combine


def _print_tables(args: argparse.Namespace, method: str, grid: dict, combine: dict,
                  cells: dict[tuple[str, int, str], dict]) -> None:
    """The ranking of every blend and each cell's margins under the best, the constants and the plain blend."""
    def summary(label: str) -> tuple[float, float, int]:
        values = [cell[label] for cell in cells.values()]
        met = sum(p >= GOAL_PSNR and s >= GOAL_SSIM for p, s in values)
        return float(np.mean([p for p, _ in values])), min(p for p, _ in values), met

    ranked = sorted(grid, key=lambda label: -summary(label)[0])
    constants = band_label(variant_settings(method, args.size))
    shown = list(dict.fromkeys([*ranked[: args.top], constants, "plain 0.5"]))
    name = " + ".join(f"{w:g} x {d.name}" for d, w in combine.items()) if combine else network_label(args.network)
    print(f"{name}, {len(cells)} cells at {args.size}²: margin over TV, "
          "psnr_range (dB)\n")
    print("| rank | blend | mean | smallest | cells meeting the goal |\n|---:|---|---:|---:|---:|")
    for label in shown:
        mean, smallest, met = summary(label)
        print(f"| {ranked.index(label) + 1} | {label} | {mean:+.2f} | {smallest:+.2f} | {met} |")
    columns = list(dict.fromkeys([ranked[0], constants, "plain 0.5"]))
    print("\n| sample | views | photons | " + " | ".join(columns) + " | the cell's own best (oracle) |")
    print("|---|---:|---:|" + "---:|" * (len(columns) + 1))
    own_best = []
    for (sample, views, noise), cell in cells.items():
        own = max(cell, key=lambda label: cell[label][0])
        own_best.append(cell[own][0])
        print(f"| {sample} | {views} | {noise} | "
              + " | ".join(f"{cell[c][0]:+.2f} / {cell[c][1]:+.3f}" for c in columns)
              + f" | {cell[own][0]:+.2f} / {cell[own][1]:+.3f} ({own}) |")
    print("\nMean of the cells' own best blends (the ceiling of a per-image choice from this grid): "
          f"{np.mean(own_best):+.2f} dB")


def main(argv: list[str] | None = None) -> None:
    args, method, grid, combine = _arguments(argv)
    cells = {}
    for sample, views, photons in itertools.product(args.samples, args.views, args.photons):
        images = (combined_images(combine, sample, views, photons, args.size) if combine else
                  cell_images(args.images, sample, views, photons, args.size, args.network))
        cells[(sample, views, quality.noise_label(photons))] = margins(images, grid)

    _print_tables(args, method, grid, combine, cells)


if __name__ == "__main__":
    main()
