"""The memory shape of a run's method, as the method class declares it (`Method.memory_shape`,
danlu.methods.shape). The planner keeps no table of its own: a method registered with
`@register_method` is planned from its own file."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from danlu.errors import UserError
from danlu.methods.shape import Adapter, MethodShape  # noqa: F401  (the planner's names for them)


def method_options(name: str, method: Any):
    """A validated Method object: `method` itself, or its options given as a dict (tests, the
    recommender's variants) validated by the method's own class."""
    from danlu.methods import METHODS

    if method is not None and not isinstance(method, dict):
        return method
    cls = METHODS.get(name, where="method.name")
    options = {"name": name, **(method or {})}
    try:
        return cls.model_validate(options)
    except ValidationError as exc:
        raise UserError(f"method options {options} are not valid for {name}: {exc.errors()[0]['msg']}",
                        where="method") from None


def method_shape(arch, name: str, method: Any) -> MethodShape:
    """What the method trains and adds on `arch`, from its own class."""
    return method_options(name, method).memory_shape(arch)
