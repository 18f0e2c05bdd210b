"""The cached sparse matrix against the matrix path that preceded the matrix-free projector.

Usage (from the repository root)::

    git worktree add /tmp/oldproj 897ccc2      # the last commit with the always-built matrix
    python benchmarks/matrix_vs_old.py --old /tmp/oldproj [--size 256] [--views 180] [--rounds 3]

Runs, in alternating fresh interpreters (so machine load hits both alike), the old ``operators.Radon`` (its
matrix built on the first call) and today's ``sparsect.operators.Radon`` with ``expect_calls`` (the cached
matrix), and prints each one's build time and best-of-5 forward+adjoint at batch 1 and 16.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_SCRIPT = """
import json, sys, time, torch
old = sys.argv[1] == "old"
if old:
    from operators import ParallelBeam, Radon
else:
    from sparsect.operators import ParallelBeam, Radon
size, views = int(sys.argv[2]), int(sys.argv[3])
A = Radon(ParallelBeam.sparse(views, (size, size)))
if not old:
    A.expect_calls(1000)
start = time.perf_counter()
A(torch.zeros(1, 1, size, size))
build = time.perf_counter() - start
out = {"build_s": build}
for batch in (1, 16):
    x = torch.rand(batch, 1, size, size)
    A.adjoint(A(x))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        A.adjoint(A(x))
        best = min(best, time.perf_counter() - start)
    out[f"batch{batch}_s"] = best
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="checkout of the old commit (its folders import top-level)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=180)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for which in ("old", "new"):
            env = dict(os.environ)
            if which == "old":
                env["PYTHONPATH"] = args.old
            done = subprocess.run([sys.executable, "-c", _SCRIPT, which, str(args.size), str(args.views)],
                                  capture_output=True, text=True, check=True, env=env,
                                  cwd=args.old if which == "old" else None)
            results[which].append(json.loads(done.stdout.splitlines()[-1]))
    print(f"{args.size}² x {args.views} views, best over {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    print("| path | matrix build s | fwd+adj batch 1 s | fwd+adj batch 16 s |")
    print("|---|---:|---:|---:|")
    for which, label in (("old", "old matrix path (897ccc2)"), ("new", "cached matrix (today)")):
        rows = results[which]
        print(f"| {label} | {min(r['build_s'] for r in rows):.2f} | {min(r['batch1_s'] for r in rows):.4f} | "
              f"{min(r['batch16_s'] for r in rows):.4f} |")


if __name__ == "__main__":
    main()
