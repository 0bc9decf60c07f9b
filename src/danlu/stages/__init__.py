"""Training stages. Importing this package registers every stage module in it."""

import importlib
import pkgutil

from danlu.stages.base import Stage
from danlu.stages.registry import STAGES, register_stage

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["STAGES", "Stage", "register_stage"]
