"""sparsect: sparse-view CT reconstruction with a differentiable Radon projector, classical methods and
coordinate networks.

Subpackages: :mod:`sparsect.operators` (physics), :mod:`sparsect.reconstruct` (algorithms),
:mod:`sparsect.data` (DICOM, simulation, samples), :mod:`sparsect.app` (command line, page, batch jobs).
This file is the repository root's ``__init__.py``: ``pyproject.toml`` maps the package ``sparsect`` to
the root folder, so the top-level folders install as ``sparsect.*`` and nothing else.
"""

import os

# Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise). On a machine busier
# than its cores, spinning threads of torch's libgomp starve each other: a two-thread LRNN step took
# 15 s instead of 0.6 s (docs/BENCHMARKS.md, "Thread counts"). Effective only when sparsect is imported
# before torch, as the command line, the page and batch jobs do.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
