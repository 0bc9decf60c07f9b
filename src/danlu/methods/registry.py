"""Registry of fine-tuning methods: `method.name` → the method's config class (its strategy).
A class registers only if it declares its memory shape (`memory_shape`), so `danlu plan` and the
memory check of `danlu train` can plan every method that trains."""

from danlu.registry import Registry


def _declares_memory_shape(name: str, cls) -> None:
    declared = getattr(cls, "memory_shape", None)
    if declared is None or getattr(declared, "placeholder", False):  # Method's own is a placeholder
        raise TypeError(f"method {name!r} ({cls.__name__}) must define memory_shape(self, arch) -> MethodShape "
                        "(danlu.methods.shape): what it trains and adds, for danlu plan")


METHODS: Registry = Registry("method", check=_declares_memory_shape)
register_method = METHODS.register
