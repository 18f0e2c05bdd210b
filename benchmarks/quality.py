"""Reconstruction quality benchmark: PSNR / SSIM / RMSE and time per method, sample, size and view count.

Usage (from the repository root)::

    python benchmarks/quality.py [--sizes 128 256] [--views 30 60 100] [--methods fbp sirt cgls tv]
                                 [--samples head_693 ct_small shepp_logan] [--photons 0 1e5]
                                 [--simulation honest|same-grid] [--threads N] [--out docs/benchmarks_quality.md]

Each sample is loaded at its own resolution and simulated with ``data.simulate`` on a size x size working
grid (parallel beam over 180 degrees; the honest simulation by default: from the sample's own pixels when
they are at least 2x finer, else from the sample upsampled bilinearly to 2x; ``--photons 0`` means
noise-free, otherwise Poisson noise with that many incident photons per bin, seed 0) and reconstructed by
every method. Metrics use :func:`reconstruct.metrics.compare` (PSNR/SSIM over the full window
[-1024, 3071] HU, the reference-range PSNR/SSIM and the soft-tissue RMSE, inscribed circle) against the
simulation's ground truth, the sample area-averaged onto the working grid (attenuation clipped at 0, so
values below -1000 HU become -1000 HU).

Methods are named as for ``sparsect reconstruct`` and run through :func:`sparsect.reconstruct.run` with the
scan's photons per bin (``math.inf`` noise-free, as the app passes it); a network may carry fit variants,
"NETWORK+VARIANT[+VARIANT...]" (e.g. "lrnn+ramp_loss+fbp_init"); a plain network name is the published
formulation. ``--fit FIELD=VALUE`` sets a :class:`sparsect.reconstruct.fit.FitConfig` field of every network
fit (e.g. ``--fit tv_weight=0.1``) and ``--model FIELD=VALUE`` a field of each network's configuration in the
preset (e.g. ``--model rank=48``); the rows' method names carry both, and ``--ensemble-size K`` when K is not
the default. With ``tv`` among the methods a last table gives every other method minus TV in the reference-range
scores (the goal of the LRNN-vs-TV issue).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sparsect import data
from sparsect.reconstruct import metrics, neural, registry
from sparsect.reconstruct.device import resolve_device
from sparsect.reconstruct.models import build_model, get_preset
from sparsect.reconstruct.result import Reconstruction

Method = Callable[..., Reconstruction]

#: Budget of the coordinate networks, set from the command line (--preset, --iterations, --device,
#: --ensemble-size, --seed: the networks' first initialisation seed; the simulated noise keeps seed 0).
NEURAL_BUDGET: dict = {"preset": "preview", "iterations": None, "device": "auto",
                       "ensemble_size": neural.ENSEMBLE_SIZE, "seed": 0}
#: FitConfig fields set on every network fit (--fit FIELD=VALUE).
FIT_FIELDS: dict = {}
#: Fields of the networks' model configuration replaced in the preset (--model FIELD=VALUE).
MODEL_FIELDS: dict = {}


def noise_label(photons: float) -> str:
    """The noise column of the tables and the saved files: "none" for 0 (noise-free), else the photon count with as
    few digits as name it exactly (1e+05, 2.5e+04), so two counts never share a saved file."""
    if not photons:
        return "none"
    return next(label for digits in range(17) if float(label := f"{photons:.{digits}e}") == photons)


def lookup(name: str) -> Method | None:
    """The reconstruction function of a benchmark method name, or None for an unknown one."""
    method, *variants = name.split("+")
    if method not in registry.METHODS or (variants and method not in registry.NETWORK_METHODS):
        return None
    if not set(variants) <= set(registry.VARIANT_NAMES):
        return None
    budget = dict(NEURAL_BUDGET) if method in registry.NETWORK_METHODS else {}
    if budget and MODEL_FIELDS:
        spec = get_preset(method, budget["preset"])
        budget["preset"] = dataclasses.replace(spec, config=dataclasses.replace(spec.config, **MODEL_FIELDS))

    def reconstruct(sinogram, geometry, pixel_size_mm: float = 1.0, photons: float | None = None) -> Reconstruction:
        return registry.run(method, sinogram, geometry, pixel_size_mm=pixel_size_mm, photons=photons,
                            variant=variants or None, fit_fields=FIT_FIELDS, **budget)

    return reconstruct


def run(sizes: list[int], views: list[int], methods: list[str], samples: list[str],
        photons: list[float], simulation: str = "honest") -> list[dict]:
    """Run every combination; one dict per reconstruction with the metrics and settings."""
    functions = {m: lookup(m) for m in methods}
    unknown = [m for m, function in functions.items() if function is None]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; available: {', '.join(registry.METHODS)} "
                         "(networks also as NETWORK+VARIANT[+VARIANT])")
    rows = []
    for sample in samples:
        for size in sizes:
            ct = data.load_sample(sample)
            for n_views in views:
                for count in photons:
                    scan = data.simulate(ct, n_views, photons=count or None, seed=0, size=size, simulation=simulation)
                    for name in methods:
                        result = functions[name](scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm,
                                                 photons=count or math.inf)
                        scores = metrics.compare(result.image_hu, scan.reference_hu)
                        row = {"sample": sample, "size": size, "views": n_views,
                               "noise": noise_label(count), "method": method_label(name),
                               **{key: float(value) for key, value in scores.items()}, "simulation": scan.label,
                               "iterations": result.iterations, "seconds": result.seconds,
                               "parameters": result.n_parameters,
                               "peak_memory_mb": (getattr(result, "peak_memory_bytes", None) or 0) / 2**20,
                               "recoveries": result.settings.get("recoveries"),
                               "largest_loss_ratio": result.settings.get("largest_loss_ratio")}
                        rows.append(row)
                        guard = "" if row["recoveries"] is None else \
                            f" roll-backs {row['recoveries']} loss peak {row['largest_loss_ratio']:.1f}x"
                        print(f"{sample:12s} {size:4d} {n_views:4d} {row['noise']:>5s} {name:8s} "
                              f"PSNR {row['psnr']:6.2f} SSIM {row['ssim']:.4f} RMSE {row['rmse_hu']:7.1f} HU "
                              f"it {row['iterations']:4d} {row['seconds']:6.2f} s{guard}", file=sys.stderr, flush=True)
    return rows


def check_network_fields(methods: list[str]) -> None:
    """Raise ``ValueError`` (one line) unless every network of ``methods`` accepts the --fit and --model fields."""
    for name in methods:
        method, *variants = name.split("+")
        if method not in registry.NETWORK_METHODS:
            continue
        spec = get_preset(method, NEURAL_BUDGET["preset"])
        try:
            spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, **MODEL_FIELDS))
            build_model(method, spec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--model: {exc}") from None
        try:
            neural.fit_config(method, spec, NEURAL_BUDGET["iterations"], variants or None, **FIT_FIELDS)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--fit: {exc}") from None


def method_label(name: str) -> str:
    """A method's name in the tables: a network's carries the --fit and --model fields, an ensemble's size other
    than the default and a seed other than 0."""
    fields = {**FIT_FIELDS, **MODEL_FIELDS}
    if neural.ENSEMBLE in name.split("+")[1:] and NEURAL_BUDGET["ensemble_size"] != neural.ENSEMBLE_SIZE:
        fields["ensemble_size"] = NEURAL_BUDGET["ensemble_size"]
    if NEURAL_BUDGET["seed"]:
        fields["seed"] = NEURAL_BUDGET["seed"]
    if fields and name.split("+")[0] in registry.NETWORK_METHODS:
        return name + "[" + ",".join(f"{k}={v}" for k, v in fields.items()) + "]"
    return name


def parse_field(text: str) -> tuple[str, object]:
    """FIELD=VALUE of --fit and --model: the value as an int, a float, true/false or the text."""
    field, _, value = text.partition("=")
    for convert in (int, float):
        try:
            return field, convert(value)
        except ValueError:
            pass
    return field, {"true": True, "false": False}.get(value.lower(), value)


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """The networks' ``--ensemble-size``, ``--seed``, ``--fit`` and ``--model`` options (set by
    :func:`apply_network_options`)."""
    parser.add_argument("--ensemble-size", type=int, default=neural.ENSEMBLE_SIZE,
                        help=f"networks of the ensemble variant (default {neural.ENSEMBLE_SIZE})")
    parser.add_argument("--seed", type=int, default=0,
                        help="first initialisation seed of every network fit (an ensemble takes the next ones too; "
                             "default 0); the simulated noise keeps seed 0")
    parser.add_argument("--fit", action="append", default=[], metavar="FIELD=VALUE",
                        help="a FitConfig field of every network fit (repeatable), e.g. tv_weight=0.1")
    parser.add_argument("--model", action="append", default=[], metavar="FIELD=VALUE",
                        help="a field of the preset's network configuration (repeatable), e.g. rank=48")


def apply_network_options(parser: argparse.ArgumentParser, args: argparse.Namespace, methods: list[str]) -> None:
    """Set the ensemble size and seed of :data:`NEURAL_BUDGET`, :data:`FIT_FIELDS` and :data:`MODEL_FIELDS` from
    ``args`` (after the rest of the budget); ``parser.error`` (one line) unless the ensemble size is at least 1, the
    seed at least 0 and every network of ``methods`` accepts the fields."""
    if args.ensemble_size < 1:
        parser.error("--ensemble-size must be at least 1")
    if args.seed < 0:
        parser.error("--seed must be at least 0")
    NEURAL_BUDGET["ensemble_size"] = args.ensemble_size
    NEURAL_BUDGET["seed"] = args.seed
    FIT_FIELDS.update(parse_field(text) for text in args.fit)
    MODEL_FIELDS.update(parse_field(text) for text in args.model)
    try:
        check_network_fields(methods)
    except ValueError as exc:
        parser.error(str(exc))


def to_goal_markdown(rows: list[dict], reference: str = "tv") -> str:
    """Every method minus ``reference`` per case: PSNR range dB, SSIM range, PSNR dB, and the method's seconds."""
    cases: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cases.setdefault((r["sample"], r["size"], r["views"], r["noise"]), {})[r["method"]] = r
    lines = [f"| sample | size | views | photons | method | - {reference}: PSNR range dB | SSIM range | PSNR dB "
             "| seconds |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for (sample, size, views, noise), found in cases.items():
        base = found.get(reference)
        if base is None:
            continue
        for method, r in found.items():
            if method != reference:
                d_range, d_ssim = r["psnr_range"] - base["psnr_range"], r["ssim_range"] - base["ssim_range"]
                lines.append(f"| {sample} | {size} | {views} | {noise} | {method} | {d_range:+.2f} | {d_ssim:+.4f} | "
                             f"{r['psnr'] - base['psnr']:+.2f} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[dict]) -> str:
    """Markdown table of the rows."""
    lines = ["| sample | size | views | photons | method | PSNR dB | SSIM | RMSE HU | PSNR range dB | SSIM range | "
             "RMSE soft HU | iterations | seconds | parameters | peak MB |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sample']} | {r['size']} | {r['views']} | {r['noise']} | {r['method']} | "
                     f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['rmse_hu']:.1f} | {r['psnr_range']:.2f} | "
                     f"{r['ssim_range']:.4f} | {r['rmse_soft_hu']:.1f} | {r['iterations']} | "
                     f"{r['seconds']:.2f} | {r['parameters']} | {r['peak_memory_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def to_summary_markdown(rows: list[dict]) -> str:
    """One row per case (sample, size, views, photons), one column per method: "PSNR dB / SSIM range /
    soft-tissue RMSE HU"; the best PSNR of each row in bold."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cases: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cases.setdefault((r["sample"], r["size"], r["views"], r["noise"]), {})[r["method"]] = r
    lines = ["| sample | size | views | photons | " + " | ".join(methods) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(methods)]
    for (sample, size, views, noise), found in cases.items():
        best = max(r["psnr"] for r in found.values())
        cells = []
        for method in methods:
            r = found.get(method)
            if r is None:
                cells.append("-")
                continue
            psnr = f"**{r['psnr']:.2f}**" if r["psnr"] == best else f"{r['psnr']:.2f}"
            cells.append(f"{psnr} / {r['ssim_range']:.3f} / {r['rmse_soft_hu']:.1f}")
        lines.append(f"| {sample} | {size} | {views} | {noise} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--views", type=int, nargs="+", default=[30, 60, 100])
    parser.add_argument("--methods", nargs="+", default=["fbp", "sirt", "cgls", "tv"],
                        help="classical methods, lrnn / wire / siren, or NETWORK+VARIANT[+VARIANT] (lrnn+ramp_loss)")
    parser.add_argument("--samples", nargs="+", default=["head_693", "ct_small", "shepp_logan"])
    parser.add_argument("--photons", type=float, nargs="+", default=[0.0, 1e5],
                        help="incident photons per bin; 0 = noise-free")
    parser.add_argument("--simulation", default="honest", choices=list(data.SIMULATIONS),
                        help="honest (default) or same-grid (the inverse crime, for comparison with old tables)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    parser.add_argument("--preset", default="preview", help="network preset (preview, paper, quality)")
    parser.add_argument("--iterations", type=int, default=None, help="network iteration budget (default: preset)")
    parser.add_argument("--device", default="auto", help="device for the networks")
    add_network_options(parser)
    args = parser.parse_args(argv)
    NEURAL_BUDGET.update(preset=args.preset, iterations=args.iterations, device=args.device)
    apply_network_options(parser, args, args.methods)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = run(args.sizes, args.views, args.methods, args.samples, args.photons, args.simulation)
    table = to_markdown(rows)
    elapsed = time.perf_counter() - start
    network_device = resolve_device(args.device)
    where = (f"networks on {torch.cuda.get_device_name(network_device)}, classical methods on CPU"
             if network_device.type == "cuda" else "cpu")
    footer = (f"\nDevice: {where}, {torch.get_num_threads()} torch threads; wall time {elapsed:.0f} s; "
              f"defaults of each method; {data.SIMULATIONS[args.simulation]} simulation; metrics over the "
              f"inscribed circle: PSNR/SSIM in the full window [-1024, 3071] HU, range: the reference's own "
              f"min..max, soft: reference pixels at -200..200 HU.\n")
    summary = to_summary_markdown(rows)
    if any(r["method"] == "tv" for r in rows):
        summary += "\n" + to_goal_markdown(rows)
    print(summary + "\n" + table + footer)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Reconstruction quality\n\n" + summary + "\n" + table + footer)


if __name__ == "__main__":
    main()
