"""CPU thread settings and the LRNN step: forward + backward of the `preview` LRNN over a 128² grid.

Usage (from the repository root)::

    python benchmarks/threads.py --threads 1          # in a fresh interpreter per setting
    OMP_WAIT_POLICY=ACTIVE python benchmarks/threads.py --threads 2

Times the network step (median of 3) before and after one projector call (forward + adjoint, 30 views),
and prints torch's thread count after that call, the OpenMP wait policy and the load average. It
reproduces the two findings of docs/BENCHMARKS.md "Thread counts": numba's OpenMP layer used to raise
torch's thread count, and spinning OpenMP threads on a machine busier than its cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import sparsect  # noqa: F401 - before torch: sets the OpenMP wait policy unless the user chose one

# isort: split
import torch

from sparsect import operators
from sparsect.reconstruct.fit import pixel_grid
from sparsect.reconstruct.models import build_model


def step_seconds(model: torch.nn.Module, coords: torch.Tensor, repeats: int = 3) -> float:
    """Median wall time of one forward + backward of ``model(coords).sum()``."""
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(coords).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("lrnn", "preview")
    coords = pixel_grid((128, 128), torch.device("cpu")).reshape(-1, 2)
    before = step_seconds(model, coords)
    radon = operators.Radon(operators.ParallelBeam.sparse(30, (128, 128)))
    radon.adjoint(radon(torch.rand(1, 1, 128, 128)))
    after = step_seconds(model, coords)
    print(f"threads {args.threads}  OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}  "
          f"step before projector {before:.3f} s  after {after:.3f} s  torch threads after {torch.get_num_threads()}  "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
