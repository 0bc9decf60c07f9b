"""Registry of data formats: `data.format` → the format class."""

from danlu.registry import Registry

FORMATS: Registry = Registry("data format")
register_format = FORMATS.register
