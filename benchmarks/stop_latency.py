"""How long the first Ctrl-C can wait: the longest time between two stop checks in each phase of a run.

Usage (from the repository root)::

    python benchmarks/stop_latency.py --size 1024 --views 60 --methods fbp tv
    python benchmarks/stop_latency.py --size 512 --views 60 --methods lrnn --iterations 4

Simulates the sample's scan at ``--size`` and runs the methods through the run layer (as ``sparsect reconstruct``
does) with a stop request that never fires but records when it is checked. A Ctrl-C is honoured at the next check,
so the longest time between two checks is how long it may wait; each gap is booked to the phase the last progress
report named (the simulation, a projector's matrix build, a warm start, iterations). Prints one line per phase:
checks, longest gap and total seconds.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import sparsect  # noqa: F401 - before torch: sets the OpenMP wait policy unless the user chose one
from sparsect.app import run, scans, settings


class CheckTimer(run.RunListener):
    """A stop request (call it) that records the time between two checks, per phase (set by the reports)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.current = "simulation"
        self.gaps: dict[str, list[float]] = defaultdict(list)

    def __call__(self) -> bool:
        now = time.perf_counter()
        self.gaps[self.current].append(now - self.last)
        self.last = now
        return False

    def started(self, name: str, iterations: int | None) -> None:
        self.current = f"{name} before its first report"

    def phase(self, name: str, state) -> None:
        self.current = f"{name} {state.phase}"

    def progress(self, name: str, state) -> None:
        self.current = f"{name} {getattr(state, 'phase', 'iterations')}"

    def finished(self, name: str, outcome: run.Outcome) -> None:
        self.current = f"{name} after its last check"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="head_693")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--methods", nargs="+", default=["fbp", "tv"])
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    scan_settings = settings.scan_settings(views=args.views, size=args.size)
    ct = scans.load_input(args.sample, size=args.size)
    timer = CheckTimer()
    scan = scans.simulate(ct, scan_settings, stop=timer)
    tasks = run.tasks_for(args.methods, settings.method_settings(iterations=args.iterations))
    run.run_tasks(scan, tasks, timer, stop=timer)
    print(f"{args.sample} at {args.size}x{args.size}, {args.views} views")
    for phase, gaps in timer.gaps.items():
        print(f"{phase:32s} checks {len(gaps):5d}  longest gap {max(gaps):6.2f} s  total {sum(gaps):7.1f} s")


if __name__ == "__main__":
    main()
