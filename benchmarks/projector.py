"""Time the projector: a new geometry's first call, and steady-state products, against other projectors.

Run: python benchmarks/projector.py   (named so it does not shadow the operators package)
 [--first 512x720 1024x1440] [--steady 256x180] [--batches 1 16] [--repeat 3] [--skip-slow]

First call: each geometry runs in a fresh interpreter (kernels loaded first, as importing ASTRA loads
its library), which times our first forward+adjoint, its peak resident memory above the interpreter's
(getrusage), then ASTRA's first forward+adjoint in the same process (projector creation included).
Steady state: best of --repeat for forward+adjoint per batch: ours matrix-free (compiled CPU kernels),
ours vectorised torch (the path CUDA runs), ours with the cached matrix (announced; build timed
apart), ASTRA CPU, torchtomo's CPU path, deepinv's ``Tomography`` and scikit-image. Other projectors are
skipped when absent.
Prints markdown tables; all ratios come from one process, side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from sparsect.operators import ParallelBeam, Radon, astra_available
from sparsect.operators.system_matrix import MATRICES

_FIRST_CALL = """
import json, resource, sys, time, torch
from sparsect.operators import ParallelBeam, Radon, astra_available
size, views, with_astra = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
warm = Radon(ParallelBeam.sparse(4, (8, 8)))
warm.adjoint(warm(torch.zeros(8, 8)))
load_s = time.perf_counter() - start
x = torch.rand(1, 1, size, size)
base = peak_mb()
start = time.perf_counter()
A = Radon(ParallelBeam.sparse(views, (size, size)))
A.adjoint(A(x))
ours_s = time.perf_counter() - start
peak = peak_mb() - base
astra_s = float("nan")
if with_astra and astra_available():
    start = time.perf_counter()
    B = Radon(ParallelBeam.sparse(views, (size, size)), backend="astra")
    B.adjoint(B(x))
    astra_s = time.perf_counter() - start
print(json.dumps({"load_s": load_s, "ours_s": ours_s, "peak_mb": peak, "astra_s": astra_s}))
"""


def _best_of(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _shape(text: str) -> tuple[int, int]:
    size, views = text.lower().split("x")
    return int(size), int(views)


def first_calls(cases: list[tuple[int, int]], astra_limit: int) -> None:
    print(_row(["size x views", "kernel load s", "ours first fwd+adj s", "peak MB above interpreter",
                "astra first fwd+adj s", "ours vs astra"]))
    print(_row(["---"] * 6))
    for size, views in cases:
        with_astra = size * views <= astra_limit
        done = subprocess.run([sys.executable, "-c", _FIRST_CALL, str(size), str(views), str(int(with_astra))],
                              capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(_row([f"{size}² x {views}", f"{result['load_s']:.2f}", f"{result['ours_s']:.2f}",
                    f"{result['peak_mb']:.0f}", f"{result['astra_s']:.2f}",
                    f"{result['astra_s'] / result['ours_s']:.2f}x"]), flush=True)


def _others(size: int, views: int, geometry: ParallelBeam, batch: int, repeat: int, skip_slow: bool) -> dict:
    """fwd+adj seconds of the other projectors on the same images (absent ones give nan)."""
    x = torch.rand(batch, 1, size, size)
    times = {"astra": float("nan"), "torchtomo": float("nan"), "deepinv": float("nan"), "skimage": float("nan")}
    if astra_available():
        B = Radon(geometry, backend="astra")
        y = B(x)
        times["astra"] = _best_of(lambda: B.adjoint(B(x)), repeat)
    try:
        import torchtomo
    except ImportError:
        torchtomo = None
    if torchtomo is not None:
        P = torchtomo.ParallelBeam(img_size=size, n_angles=views, circle=False)
        P.adjoint(P.forward(x))
        times["torchtomo"] = _best_of(lambda: P.adjoint(P.forward(x)), repeat)
    try:
        from deepinv.physics import Tomography
    except ImportError:
        Tomography = None
    if Tomography is not None:
        D = Tomography(angles=torch.rad2deg(geometry.angles).float(), img_width=size, circle=False,
                       normalize=False, device="cpu")
        D.A_adjoint(D.A(x))
        times["deepinv"] = _best_of(lambda: D.A_adjoint(D.A(x)), repeat)
    if not skip_slow:
        from skimage.transform import iradon, radon

        theta = np.rad2deg(geometry.angles.numpy())
        images = x[:, 0].numpy()
        y = [radon(images[0], theta=theta, circle=False)] * batch

        def both():
            [radon(i, theta=theta, circle=False) for i in images]
            [iradon(s, theta=theta, circle=False, filter_name=None) for s in y]

        times["skimage"] = _best_of(both, 1)
    return times


def steady_state(cases: list[tuple[int, int]], batches: list[int], repeat: int, skip_slow: bool) -> None:
    columns = ["size x views", "batch", "ours matrix-free s", "ours torch-vectorised s", "matrix build s",
               "ours cached matrix s", "astra s", "torchtomo s", "deepinv s", "skimage s", "matrix-free vs astra",
               "matrix-free vs torchtomo", "matrix-free vs deepinv", "cached matrix vs astra"]
    print(_row(columns))
    print(_row(["---"] * len(columns)))
    for size, views in cases:
        geometry = ParallelBeam.sparse(views, (size, size))
        MATRICES.clear()
        free = Radon(geometry)
        vectorised = Radon(geometry)
        vectorised._backend.compiled_cpu = False
        images = {batch: torch.rand(batch, 1, size, size) for batch in batches}
        rows = {}
        for batch, x in images.items():  # before any matrix exists: a cached one would serve all of them
            free_s = _best_of(lambda: free.adjoint(free(x)), repeat)  # noqa: B023
            vectorised_s = float("nan") if skip_slow and batch > 1 else _best_of(
                lambda: vectorised.adjoint(vectorised(x)), 1)  # noqa: B023
            gpu_free = float("nan")
            if torch.cuda.is_available():
                xc = x.cuda()
                gpu_free = _best_of(lambda: free.adjoint(free(xc)), repeat)  # noqa: B023
            rows[batch] = (free_s, vectorised_s, gpu_free, _others(size, views, geometry, batch, repeat, skip_slow))
        cached = Radon(geometry).expect_calls(1000)
        build = _best_of(lambda: cached(torch.zeros(size, size)), 1)  # noqa: B023 - announced: builds the matrix
        for batch, x in images.items():
            free_s, vectorised_s, gpu_free, others = rows[batch]
            cached_s = _best_of(lambda: cached.adjoint(cached(x)), repeat)  # noqa: B023
            print(_row([f"{size}² x {views}", batch, f"{free_s:.4f}", f"{vectorised_s:.3f}", f"{build:.2f}",
                        f"{cached_s:.4f}", f"{others['astra']:.4f}", f"{others['torchtomo']:.4f}",
                        f"{others['deepinv']:.4f}", f"{others['skimage']:.3f}", f"{others['astra'] / free_s:.2f}x",
                        f"{others['torchtomo'] / free_s:.2f}x", f"{others['deepinv'] / free_s:.2f}x",
                        f"{others['astra'] / cached_s:.2f}x"]), flush=True)
            if torch.cuda.is_available():
                xc = x.cuda()
                cached(xc)
                gpu_cached = _best_of(lambda: cached.adjoint(cached(xc)), repeat)  # noqa: B023
                print(f"  CUDA {torch.cuda.get_device_name()}: fwd+adj matrix-free {gpu_free:.4f} s "
                      f"({batch / gpu_free:.0f} images/s), cached matrix {gpu_cached:.4f} s "
                      f"({batch / gpu_cached:.0f} images/s)")
        MATRICES.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=_shape, nargs="*", default=[(256, 180), (512, 180), (512, 720), (1024, 1440)])
    parser.add_argument("--steady", type=_shape, nargs="*", default=[(256, 180)])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--astra-limit", type=int, default=512 * 720,
                        help="run ASTRA's first call only where size * views is at most this")
    parser.add_argument("--skip-slow", action="store_true",
                        help="skip scikit-image and the vectorised torch path at batches above 1")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if args.first:
        first_calls(args.first, args.astra_limit)
        print()
    if args.steady:
        steady_state(args.steady, args.batches, args.repeat, args.skip_slow)


if __name__ == "__main__":
    main()
