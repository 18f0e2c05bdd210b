"""Where in spatial frequency TV, a coordinate network and their blends err: RMS error per frequency band.

Usage (from the repository root)::

    python benchmarks/error_bands.py [--samples head_693 ct_small] [--views 30 60] [--photons 0 1e5]
                                     [--size 128] [--network lrnn+fbp_init+ramp_loss] [--seed S] [--ensemble-size K]
                                     [--fit FIELD=VALUE] [--model FIELD=VALUE] [--threads N]

Each sample is simulated as in ``benchmarks/quality.py`` (honest simulation, seed 0) and reconstructed by TV (its
noise-aware default) and by the network (``NETWORK+VARIANT...``, fitted as ``benchmarks/quality.py`` fits it, with its
``--seed``, ``--ensemble-size``, ``--fit`` and ``--model``). The table gives the RMS error (HU) inside the inscribed
circle (the metrics' mask) in bands of radial spatial frequency (cycles per pixel; the bands' squares add up to the
total's) of TV, the network, their mean (the ``tv_blend`` image) and their blend by frequency band (the ``band_blend``
image: :mod:`sparsect.reconstruct.blend` with the network's ``BAND_BLEND_SHARES`` of
:mod:`sparsect.reconstruct.neural`). The reference's own content per band (minus its mean) comes first; after each
cell, a row gives the correlation of the network's error with TV's per band (1: the same error, so blending cannot
cancel it; 0: independent; below 0: blending cancels more than independent errors would).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import quality  # benchmarks/quality.py: the same fit of a method name and the same network options
import torch

from sparsect import data
from sparsect.reconstruct import blend, metrics, neural, registry

#: Edges of the radial frequency bands, cycles per pixel (the last one reaches the corner, sqrt(2) / 2).
BAND_EDGES = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, math.sqrt(0.5) + 1e-9)


def band_spectra(image: np.ndarray, circle: np.ndarray) -> list[np.ndarray]:
    """The FFT of ``image`` zeroed outside ``circle``, its bins split by the bands of :data:`BAND_EDGES` (one 1-D
    complex array per band)."""
    spectrum = np.fft.fft2(np.where(circle, image, 0.0))
    radius = blend.radial_frequency(image.shape)
    return [spectrum[(radius >= low) & (radius < high)]
            for low, high in zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=True)]


def band_rms(image: np.ndarray, circle: np.ndarray) -> list[float]:
    """RMS (the image's unit) of ``image`` inside ``circle`` per band of :data:`BAND_EDGES` (Parseval)."""
    scale = image.size * circle.sum()
    return [math.sqrt(float(np.sum(np.abs(bins) ** 2)) / scale) for bins in band_spectra(image, circle)]


def band_correlation(first: np.ndarray, second: np.ndarray, circle: np.ndarray) -> list[float]:
    """Correlation coefficient of two images inside ``circle`` per band of :data:`BAND_EDGES` (their spectra's
    normalised inner product; 0 where either is empty)."""
    values = []
    for a, b in zip(band_spectra(first, circle), band_spectra(second, circle), strict=True):
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        values.append(float(np.real(np.vdot(a, b))) / norms if norms > 0 else 0.0)
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", nargs="+", default=["head_693", "ct_small"])
    parser.add_argument("--views", type=int, nargs="+", default=[30, 60])
    parser.add_argument("--photons", type=float, nargs="+", default=[0.0, 1e5], help="0 = noise-free")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--network", default="lrnn+fbp_init+ramp_loss", help="NETWORK+VARIANT[+VARIANT]")
    quality.add_network_options(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    method, *variants = args.network.split("+")
    if method not in registry.NETWORK_METHODS or not set(variants) <= set(registry.VARIANT_NAMES):
        parser.error(f"--network must be NETWORK+VARIANT... with a network of {registry.NETWORK_METHODS}")
    quality.apply_network_options(parser, args, [args.network])
    fit_tv, fit_network = quality.lookup("tv"), quality.lookup(args.network)
    if args.threads:
        torch.set_num_threads(args.threads)
    bands = " | ".join(f"{low:.3g}-{high:.3g}" for low, high in zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=True))
    print(f"| sample | views | photons | image | {bands} | total |")
    print("|---|---:|---:|---|" + "---:|" * (len(BAND_EDGES) - 1) + "---:|")
    for sample in args.samples:
        ct = data.load_sample(sample)
        for views in args.views:
            for count in args.photons:
                scan = data.simulate(ct, views, photons=count or None, seed=0, size=args.size)
                photons = count or math.inf
                run = dict(pixel_size_mm=scan.pixel_size_mm, photons=photons)
                reference = np.asarray(scan.reference_hu, dtype=np.float64)
                tv = np.asarray(fit_tv(scan.sinogram, scan.geometry, **run).image_hu, dtype=np.float64)
                network = np.asarray(fit_network(scan.sinogram, scan.geometry, **run).image_hu, dtype=np.float64)
                response = neural.band_blend_response(method, reference.shape)
                circle = metrics.circle_mask(reference.shape)
                images = {"reference minus its mean": reference - reference[circle].mean(),
                          "TV error": tv - reference,
                          f"{quality.method_label(args.network)} error": network - reference,
                          "tv_blend error": blend.blend(tv, network, neural.TV_BLEND_WEIGHT) - reference,
                          "band_blend error": blend.blend(tv, network, response) - reference}
                noise = quality.noise_label(count)
                for name, image in images.items():
                    values = band_rms(image, circle)
                    print(f"| {sample} | {views} | {noise} | {name} | " + " | ".join(f"{v:.1f}" for v in values)
                          + f" | {math.sqrt(sum(v * v for v in values)):.1f} |", flush=True)
                correlation = band_correlation(network - reference, tv - reference, circle)
                print(f"| {sample} | {views} | {noise} | correlation of the network's and TV's errors | "
                      + " | ".join(f"{v:+.2f}" for v in correlation) + " | |", flush=True)


if __name__ == "__main__":
    main()
