"""A tiny name → object registry. Methods, stages and data formats each keep one, so adding
a method is one new module with one `@register` and nothing else."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from danlu.errors import UserError, closest

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._items or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return deco

    def canonical(self, name: str) -> str:
        return self._aliases.get(name, name)

    def get(self, name: str, *, where: str | None = None) -> T:
        key = self.canonical(name)
        if key not in self._items:
            near = closest(name, self.names(with_aliases=True))
            hint = f"did you mean {near!r}?" if near else None
            raise UserError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}", where=where, hint=hint
            )
        return self._items[key]

    def names(self, *, with_aliases: bool = False) -> list[str]:
        return list(self._items) + (list(self._aliases) if with_aliases else [])

    def aliases_of(self, name: str) -> list[str]:
        return [a for a, n in self._aliases.items() if n == name]

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) in self._items

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(self._items.items())
