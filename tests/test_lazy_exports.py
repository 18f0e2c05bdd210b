"""The subpackages import their public names on first use: every name resolves, and the command line's help
loads neither torch nor the DICOM and imaging libraries (what keeps ``sparsect --help`` quick)."""

import importlib
import inspect
import os
import subprocess
import sys

import pytest

PACKAGES = ("sparsect.data", "sparsect.operators", "sparsect.reconstruct", "sparsect.reconstruct.models")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__ and sorted(dir(module)) == sorted(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        assert not inspect.ismodule(value), name  # a function or class, never its module of the same name
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018


def test_a_function_keeps_its_name_after_its_module_of_the_same_name_is_imported():
    import sparsect.data
    import sparsect.data.simulate
    import sparsect.operators
    import sparsect.operators.system_matrix

    assert inspect.isfunction(sparsect.data.simulate) and inspect.isfunction(sparsect.operators.system_matrix)
    from sparsect.data import samples

    assert samples()["ct_small"]


HELP_PROBE = """
import sys
from sparsect.app.batch.cli import register
from sparsect.app.cli import cli
register(cli)
for args in (["--help"], ["reconstruct", "--help"], ["batch", "--help"], ["app", "--help"], ["--version"]):
    try:
        cli(args, prog_name="sparsect")
    except SystemExit as done:
        assert done.code in (0, None), (args, done.code)
print(" ".join(sorted(m for m in ("torch", "pydicom", "scipy", "numba", "PIL", "streamlit", "skimage", "h5py")
                      if m in sys.modules)) or "none")
"""


def test_help_loads_neither_torch_nor_the_imaging_libraries():
    completed = subprocess.run([sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, COLUMNS="80"))
    assert completed.returncode == 0, completed.stderr
    assert "Usage: sparsect reconstruct" in completed.stdout and "Usage: sparsect batch" in completed.stdout
    assert completed.stdout.splitlines()[-1] == "none"
