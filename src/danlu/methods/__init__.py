"""Fine-tuning methods. Importing this package registers every method module in it; modules
named `_*.py` hold torch code the methods import when they run (config stays torch-free)."""

import importlib
import pkgutil

from danlu.methods.base import Method, MethodContext, count_parameters
from danlu.methods.registry import METHODS, register_method

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "registry") and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["METHODS", "Method", "MethodContext", "count_parameters", "register_method"]
