"""sparsect: sparse-view CT reconstruction with a differentiable Radon projector, classical methods and
coordinate networks.

Subpackages: :mod:`sparsect.operators` (physics), :mod:`sparsect.reconstruct` (algorithms),
:mod:`sparsect.data` (DICOM, simulation, samples), :mod:`sparsect.app` (command line, page, batch jobs).
This file is the repository root's ``__init__.py``: ``pyproject.toml`` maps the package ``sparsect`` to
the root folder, so the top-level folders install as ``sparsect.*`` and nothing else.
"""

import os


def busy_machine_wait_policy(load: float, cores: int) -> str | None:
    """The OpenMP wait policy for a machine with this 1-minute ``load`` average and ``cores``: "PASSIVE"
    (idle threads sleep) when it is already as busy as its cores, else None (libgomp's default).

    Spinning threads starve each other on a busy machine: a two-thread LRNN step took 0.3-0.5 s passive
    against 0.7-3.4 s spinning at load 4-5 on 2 cores, but 0.16 s against 0.09 s on the quiet machine
    (docs/BENCHMARKS.md, "Thread counts")."""
    return "PASSIVE" if load >= cores else None


# Read by torch's libgomp when it loads: effective when sparsect is imported before torch, as the command
# line, the page and batch jobs do; a policy the user set is kept.
if "OMP_WAIT_POLICY" not in os.environ:
    try:
        _policy = busy_machine_wait_policy(os.getloadavg()[0], os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        _policy = None
    if _policy is not None:
        os.environ["OMP_WAIT_POLICY"] = _policy

__version__ = "0.1.0"
