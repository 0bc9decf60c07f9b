"""A tiny name → object registry. Methods, stages and data formats each keep one, so adding
a method is one new module with one `@register` and nothing else."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from danlu.errors import UserError, closest

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, *, check: Callable[[str, T], None] | None = None):
        self.kind = kind
        self._check = check  # raises when an object lacks what every entry must provide
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._items or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            if self._check is not None:
                self._check(name, obj)
            self._items[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove an entry and its aliases (tests that register a throwaway plugin)."""
        key = self.canonical(name)
        self._items.pop(key, None)
        for alias in self.aliases_of(key):
            del self._aliases[alias]

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
