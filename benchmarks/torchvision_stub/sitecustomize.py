"""Benchmark-only stand-in for torchvision, which cannot be installed beside the pinned CPU torch here.

deepinv imports torchvision at start-up; its ``Tomography`` operator does not use it. Put this folder on
``PYTHONPATH`` for ``benchmarks/projector.py`` only: every ``torchvision`` import then yields an empty module.
"""

import importlib.abc
import importlib.machinery
import sys
import types


class _Anything:
    """Stands in for any torchvision attribute: callable, subclassable, with any attribute."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs):
        return self

    def __getattr__(self, name: str):
        return _Anything()

    def __mro_entries__(self, bases):
        return (object,)


class _Module(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Module(spec.name)
        module.__path__ = []
        module.__version__ = "0.0"
        return module

    def exec_module(self, module) -> None:
        pass


sys.meta_path.insert(0, _Finder())
