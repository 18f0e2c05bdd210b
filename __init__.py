"""sparsect: sparse-view CT reconstruction with a differentiable Radon projector, classical methods and
coordinate networks.

Subpackages: :mod:`sparsect.operators` (physics), :mod:`sparsect.reconstruct` (algorithms),
:mod:`sparsect.data` (DICOM, simulation, samples), :mod:`sparsect.app` (command line, page, batch jobs).
This file is the repository root's ``__init__.py``: ``pyproject.toml`` maps the package ``sparsect`` to
the root folder, so the top-level folders install as ``sparsect.*`` and nothing else.
"""

__version__ = "0.1.0"
