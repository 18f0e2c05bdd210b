"""Package attributes imported on first use (PEP 562), so that ``sparsect --help`` does not load torch.

A subpackage's ``__init__`` lists which submodule defines each public name; importing the subpackage imports
none of them, and ``sparsect.data.load`` or ``from sparsect.data import load`` imports ``sparsect.data.dicom_read``
then.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> None:
    """Give ``package`` (an ``__init__`` being run) attributes that import their submodule on first use.

    Parameters
    ----------
    package : the package's ``__name__``.
    exports : submodule name relative to the package (``"dicom_read"``) -> the public names it defines.

    Notes
    -----
    ``package.name`` imports the submodule that defines ``name`` (or the submodule ``name`` itself) and returns the
    attribute; unknown names raise ``AttributeError``. Where a public name is also a submodule's name
    (``sparsect.data.simulate``, the function, defined in the module ``sparsect.data.simulate``), the name keeps
    meaning the function: the import system's binding of the submodule to the package is not kept.
    """
    where = {name: module for module, names in exports.items() for name in names}
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{package}.{name}":
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(where)

    class LazyPackage(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in where and isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}":
                return
            super().__setattr__(name, value)

    module.__getattr__ = __getattr__
    module.__dir__ = __dir__
    module.__class__ = LazyPackage
