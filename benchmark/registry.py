"""One small typed registry class, one instance per kind of component.

In-tree components register with a decorator::

    @defenses.register("gas", "Renormalized TracInCP (paper 000, Eq. 12)")
    class GAS(Defense): ...

Each registry is typed: class kinds (attacks, defenses, target rankers, protocols, removal
rules) check that what is registered subclasses the kind's contract in :mod:`benchmark.api`;
builder kinds (datasets, featurizers, models, suites) check that it is callable.

External packages register through ``importlib.metadata`` entry points whose group is
``benchmark.<kind>`` (for example ``benchmark.defenses``); the entry point's value is
``"module:attribute"`` and its name is the registered name.  Entry points are loaded lazily,
the first time a registry is listed or queried.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from benchmark.api import Attack, Defense, Protocol, RemovalRule, TargetRanker
from benchmark.suggest import did_you_mean

T = TypeVar("T")

ENTRY_POINT_PREFIX = "benchmark."


class RegistryError(LookupError):
    """Unknown or duplicate name in a registry."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    origin: str  # "in-tree" or "plugin:<distribution>"


class Registry(Generic[T]):
    """A named collection of components of one kind.

    Duplicate names are an error; unknown names raise :class:`RegistryError` with close matches.
    """

    def __init__(self, kind: str, base: type | None = None, in_tree_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.base = base  # contract class every entry must subclass; None: any callable
        self._entries: dict[str, Entry[T]] = {}
        self._in_tree_modules = in_tree_modules
        self._loaded = False

    # -- registration -------------------------------------------------------------------
    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, description, origin="in-tree")
            return obj

        return decorator

    def add(self, name: str, obj: T, description: str = "", origin: str = "in-tree") -> None:
        if not name or name != name.strip():
            raise RegistryError(f"invalid {self.kind} name {name!r}")
        if name in self._entries:
            prev = self._entries[name]
            raise RegistryError(
                f"duplicate {self.kind} name {name!r}: already registered by {prev.origin} "
                f"({_qualname(prev.obj)}); choose another name"
            )
        self._check_type(name, obj, origin)
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, description, origin)

    def _check_type(self, name: str, obj: object, origin: str) -> None:
        if self.base is not None:
            if not (isinstance(obj, type) and issubclass(obj, self.base)):
                raise RegistryError(
                    f"{self.kind} entry {name!r} ({origin}: {_qualname(obj)}) must be a subclass of "
                    f"{self.base.__module__}.{self.base.__qualname__}"
                )
        elif not callable(obj):
            raise RegistryError(f"{self.kind} entry {name!r} ({origin}) must be callable, got {obj!r}")

    # -- discovery ----------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._in_tree_modules:
            importlib.import_module(module)
        for ep in metadata.entry_points(group=ENTRY_POINT_PREFIX + self.kind):
            if ep.name in self._entries:
                prev = self._entries[ep.name]
                raise RegistryError(
                    f"duplicate {self.kind} name {ep.name!r}: plugin entry point {ep.value!r} "
                    f"clashes with {prev.origin} ({_qualname(prev.obj)})"
                )
            obj = ep.load()
            dist = getattr(ep, "dist", None)
            origin = f"plugin:{dist.name}" if dist is not None else f"plugin:{ep.value}"
            self.add(ep.name, obj, origin=origin)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            hint = did_you_mean(name, self._entries)
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}{hint} Known {self.kind}: {known}. "
                f"Run `python -m benchmark list {self.kind}`."
            ) from None

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self._ensure_loaded()
        for name in sorted(self._entries):
            yield self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# One instance per kind.  The tuple lists the in-tree modules that register into it: this is
# the one place where the harness loads the built-in plugins (by name, at first use).
datasets: Registry[Callable] = Registry("datasets", None, ("benchmark.data.loaders",))
featurizers: Registry[Callable] = Registry("featurizers", None, ("benchmark.data.featurizers",))
models: Registry[Callable] = Registry("models", None, ("benchmark.models",))
attacks: Registry[type[Attack]] = Registry("attacks", Attack, ("attacks",))
defenses: Registry[type[Defense]] = Registry("defenses", Defense, ("defenses",))
target_rankers: Registry[type[TargetRanker]] = Registry("target_rankers", TargetRanker, ("baselines",))
protocols: Registry[type[Protocol]] = Registry("protocols", Protocol, ("benchmark.protocols",))
removal_rules: Registry[type[RemovalRule]] = Registry("removal_rules", RemovalRule, ("benchmark.removal_rules",))
suites: Registry[Callable] = Registry("suites", None, ("benchmark.suites",))

ALL: dict[str, Registry] = {
    r.kind: r
    for r in (datasets, featurizers, models, attacks, defenses, target_rankers, protocols, removal_rules,
              suites)
}
