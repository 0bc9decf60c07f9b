"""Data formats. Importing this package registers every format module in it."""

import importlib
import pkgutil

from danlu.data.formats.base import Format, FormatOptions
from danlu.data.formats.registry import FORMATS, register_format

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def detect_format(row: dict, kinds: tuple[str, ...] | None = None) -> str | None:
    """The name of the first format (by priority) that recognises `row`, among `kinds` if given."""
    for name, cls in sorted(FORMATS, key=lambda item: item[1].priority):
        if (kinds is None or cls.kind in kinds) and cls.detect(row):
            return name
    return None


__all__ = ["FORMATS", "Format", "FormatOptions", "detect_format", "register_format"]
