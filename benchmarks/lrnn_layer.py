"""Eager reference for the LRNN layer and a fwd+bwd timing table (reference vs fast model).

Run as ``python benchmarks/lrnn_layer.py`` (``--compile`` adds a torch.compile column,
``--repeats`` sets the number of timed iterations, ``--device cuda`` times on a GPU). "fast" is the model as
it runs (the compiled component kernels: numba on the CPU, Triton on CUDA) and a "portable ms" column times it
with the torch loop instead. The reference evaluates all ``r*d``
component MLPs by materialising an ``(N, r*d, width)`` tensor and lets autograd do the rest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor

from sparsect.reconstruct.models import build_model, count_parameters
from sparsect.reconstruct.models.components import activation
from sparsect.reconstruct.models.lrnn import LRNN, LRNNLayer


def reference_layer_forward(layer: LRNNLayer, x: Tensor) -> Tensor:
    """Plain eager forward of ``layer`` on ``x`` ``(N, in)`` -> ``(N, r)`` using its parameters."""
    r, d = layer.rank, layer.proj_dim
    z = x @ layer.proj.weight.t() + layer.proj.bias  # (N, r*d)
    a, c, v, e = layer.a * layer.w0, layer.c * layer.w0, layer.v, layer.e
    if layer.shared:  # one MLP per neuron: repeat its parameters for the d components
        a, c, v, e = (t.repeat_interleave(d, dim=0) for t in (a, c, v, e))
    u = z[:, :, None] * a[None] + c[None]  # (N, r*d, width)
    g = (activation(u, layer.activation) * v[None]).sum(-1) + e  # (N, r*d)
    phi = torch.prod(1.0 + g.reshape(-1, r, d) / d**0.5, dim=-1)  # (N, r)
    return torch.nn.functional.layer_norm(phi, (r,), layer.norm.weight, layer.norm.bias, layer.norm.eps)


def reference_model_forward(model: LRNN, coords: Tensor) -> Tensor:
    """Eager reference forward of a whole :class:`LRNN`: ``(N, 2) -> (N, 1)``."""
    h = coords * model.config.coord_scale
    for layer in model.layers:
        h = reference_layer_forward(layer, h)
    return model.head(h)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fwd_bwd(fn, coords: Tensor, params, repeats: int, warmup: int = 2) -> float:
    """Median wall time (ms) of one forward + backward of ``fn(coords).square().mean()``."""
    times = []
    for i in range(warmup + repeats):
        for p in params:
            p.grad = None
        _synchronize(coords.device)
        t0 = time.perf_counter()
        fn(coords).square().mean().backward()
        _synchronize(coords.device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128, help="grid side (N = size**2 points)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time compile=True")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: keep default)")
    parser.add_argument("--presets", default="preview,paper", help="comma-separated LRNN presets")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    lin = torch.linspace(-1, 1, args.size)
    coords = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), -1).reshape(-1, 2).to(device)
    kernels = None
    if device.type == "cuda":
        try:
            import sparsect.reconstruct.models.components_triton as kernels
        except ImportError:
            print("triton is not installed: 'fast' is the portable kernel")
    else:
        import sparsect.reconstruct.models.components_numba as kernels
    rows = []
    for preset in args.presets.split(","):
        model = build_model("lrnn", preset).to(device)
        params = list(model.parameters())
        with torch.no_grad():
            err = (model(coords) - reference_model_forward(model, coords)).abs().max().item()
        t_ref = time_fwd_bwd(lambda x, m=model: reference_model_forward(m, x), coords, params, args.repeats)
        t_fast = time_fwd_bwd(model, coords, params, args.repeats)
        row = [preset, count_parameters(model), coords.shape[0], t_ref, t_fast, t_ref / t_fast, err]
        if kernels is not None:
            kernels.enabled = False
            row.append(time_fwd_bwd(model, coords, params, args.repeats))
            kernels.enabled = True
        if args.compile:
            cmodel = build_model("lrnn", preset, compile=True).to(device)
            cmodel.load_state_dict(model.state_dict())
            t_c = time_fwd_bwd(cmodel, coords, list(cmodel.parameters()), args.repeats, warmup=3)
            row.append(t_c)
        rows.append(row)

    header = ["preset", "params", "points", "reference ms", "fast ms", "speedup", "max |diff|"]
    if kernels is not None:
        header.append("portable ms")
    if args.compile:
        header.append("compiled ms")
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU ({torch.get_num_threads()} threads)")
    print(f"LRNN fwd+bwd on {where}, float32, {coords.shape[0]} points, median of {args.repeats}")
    print(" | ".join(f"{h:>12}" for h in header))
    for row in rows:
        cells = [
            f"{v:>12.1f}" if isinstance(v, float) and v >= 1e-3 else f"{v:>12.1e}" if isinstance(v, float)
            else f"{v:>12}"
            for v in row
        ]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
