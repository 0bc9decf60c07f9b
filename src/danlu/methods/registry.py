"""Registry of fine-tuning methods: `method.name` → the method's config class (its strategy)."""

from danlu.registry import Registry

METHODS: Registry = Registry("method")
register_method = METHODS.register
