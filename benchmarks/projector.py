"""Time forward, adjoint and FBP against scikit-image and ASTRA's CPU projector.

Run: python benchmarks/projector.py   (named so it does not shadow the operators package)
 [--sizes 256 512] [--views 180] [--batches 1 16] [--repeat 3]
Prints a markdown table; system-matrix build time is reported separately (paid once per geometry).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from skimage.transform import iradon, radon

from sparsect.operators import ParallelBeam, Radon, astra_available
from sparsect.operators.system_matrix import MATRICES


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--views", type=int, default=180)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-skimage", action="store_true", help="scikit-image is slow at 512^2 x 16")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    header = ["size", "batch", "build s", "fwd s", "adj s", "fbp s", "skimage radon s", "skimage iradon s",
              "astra fwd s", "astra adj s", "fwd vs skimage", "fwd+adj vs astra"]
    print(_row(header))
    print(_row(["---"] * len(header)))
    for size in args.sizes:
        geometry = ParallelBeam.sparse(args.views, (size, size))
        A = Radon(geometry)
        theta = np.rad2deg(geometry.angles.numpy())
        MATRICES.clear()
        build = _best_of(lambda: A(torch.zeros(size, size)), 1)  # noqa: B023 - first call builds the matrix
        for batch in args.batches:
            x = torch.rand(batch, 1, size, size)
            y = A(x)
            fwd = _best_of(lambda: A(x), args.repeat)  # noqa: B023
            adj = _best_of(lambda: A.adjoint(y), args.repeat)  # noqa: B023
            fbp = _best_of(lambda: A.fbp(y), args.repeat)  # noqa: B023
            images = x[:, 0].numpy()
            if args.skip_skimage:
                sk_fwd = sk_fbp = float("nan")
            else:
                sk_fwd = _best_of(lambda: [radon(i, theta=theta, circle=False) for i in images], 1)  # noqa: B023
                sinos = [radon(images[0], theta=theta, circle=False)] * batch
                sk_fbp = _best_of(lambda: [iradon(s, theta=theta, circle=False) for s in sinos], 1)  # noqa: B023
            if astra_available():
                B = Radon(geometry, backend="astra")
                astra_fwd = _best_of(lambda: B(x), args.repeat)  # noqa: B023
                astra_adj = _best_of(lambda: B.adjoint(y), args.repeat)  # noqa: B023
            else:
                astra_fwd = astra_adj = float("nan")
            print(_row([f"{size}²", batch, f"{build:.2f}", f"{fwd:.4f}", f"{adj:.4f}", f"{fbp:.4f}",
                        f"{sk_fwd:.3f}", f"{sk_fbp:.3f}", f"{astra_fwd:.4f}", f"{astra_adj:.4f}",
                        f"{sk_fwd / fwd:.1f}x", f"{(astra_fwd + astra_adj) / (fwd + adj):.1f}x"]))
            if torch.cuda.is_available():
                xc = x.cuda()
                Ac = A
                Ac(xc)
                gpu = _best_of(lambda: (Ac.adjoint(Ac(xc))), args.repeat)  # noqa: B023
                print(f"  CUDA {torch.cuda.get_device_name()}: fwd+adj {gpu:.4f} s, "
                      f"{batch / gpu:.0f} images/s")


if __name__ == "__main__":
    main()
