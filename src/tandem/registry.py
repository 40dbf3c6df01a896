"""One registration idiom for every kind of component: a decorator next to the class.

    from tandem.registry import register_retriever

    @register_retriever("gmf")
    class GMF(Retriever):
        def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64) -> None: ...

A registry finds its components by importing every module of its package the first time it is asked for a name,
so adding a component is one new file: no import list, no name table to edit. A component is built with the
user's options (its keyword arguments: an unknown one is an error that names it) plus whichever context arguments
(`num_items`, `num_users`, features...) its constructor accepts.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from tandem.utils import call_with_options

T = TypeVar("T")


class Registry(Mapping[str, Callable[..., Any]]):
    """Name -> component factory (a class or a function) for one kind of component ("retriever", "sampler"...).

    A read-only mapping, so `name in REGISTRY`, `sorted(REGISTRY)` and `REGISTRY[name]` work as on a dict.
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Callable[..., Any]] = {}
        self._discovered = package is None

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering a class or function under `name` (default: its lower-cased `__name__`)."""

        def decorate(component: T) -> T:
            key = (name or getattr(component, "__name__")).lower()
            existing = self._entries.get(key)
            if existing is not None and existing is not component:
                raise ValueError(f"{self.kind} {key!r} is registered twice: {existing!r} and {component!r}")
            self._entries[key] = component  # type: ignore[assignment]
            return component

        return decorate

    def _discover(self) -> None:
        """Import every module of the package once, so their decorators run."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)  # type: ignore[arg-type]
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{self.package}."):
            importlib.import_module(module.name)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        self._discover()
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {sorted(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)

    def build(self, name: str, context: dict[str, Any], options: dict[str, Any]) -> Any:
        """The component `name` built from the user's `options` and the `context` arguments it accepts."""
        return call_with_options(self[name], context, options, what=f"{self.kind} {name!r}")


RETRIEVERS = Registry("retriever", "tandem.models.retrievers")
RANKERS = Registry("ranker", "tandem.models.rankers")

register_retriever = RETRIEVERS.register
register_ranker = RANKERS.register

__all__ = ["Registry", "RETRIEVERS", "RANKERS", "register_retriever", "register_ranker"]
