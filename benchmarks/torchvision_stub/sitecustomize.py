# Benchmark-only stand-in for torchvision (not installable beside the pinned CPU torch): deepinv imports
# it at start-up, its Tomography operator does not use it.
import importlib.abc, importlib.machinery, sys, types

class _Dummy:
    def __init__(self, *a, **k): pass
    def __call__(self, *a, **k): return self
    def __getattr__(self, name): return _Dummy()
    def __mro_entries__(self, bases): return (object,)

class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Dummy()

class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None
    def create_module(self, spec):
        m = _Module(spec.name); m.__path__ = []; m.__version__ = "0.0"; return m
    def exec_module(self, module): pass

sys.meta_path.insert(0, _Finder())
