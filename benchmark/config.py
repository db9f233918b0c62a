"""Configuration helpers: sourced constants, strict dataclass construction, stable hashing.

Every constant in a suite records where it comes from (DESIGN.md, "Core contracts"):

* ``paper:000 Sec. 4.1`` -- stated in a paper (paper id + section/table),
* ``reference-code`` -- read in the authors' code (see ../shared/reference/original_code.md),
* ``ours`` -- chosen by this project before any defense was measured on it.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Mapping, TypeVar

C = TypeVar("C")

VALID_SOURCE_PREFIXES = ("paper:", "reference-code", "ours", "attack-paper:")


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


@dataclass(frozen=True)
class Sourced:
    """A constant together with where it comes from."""

    value: Any
    source: str

    def __post_init__(self) -> None:
        if not self.source.startswith(VALID_SOURCE_PREFIXES):
            raise ConfigError(
                f"constant {self.value!r} has source {self.source!r}; it must start with one of "
                f"{VALID_SOURCE_PREFIXES}"
            )


def paper(value: Any, where: str) -> Sourced:
    """A constant stated in a paper; ``where`` is e.g. ``"000 Sec. 4.1"``."""
    return Sourced(value, f"paper:{where}")


def reference_code(value: Any, where: str = "") -> Sourced:
    return Sourced(value, "reference-code" + (f" ({where})" if where else ""))


def ours(value: Any, why: str = "") -> Sourced:
    return Sourced(value, "ours" + (f" ({why})" if why else ""))


def unwrap(tree: Any) -> Any:
    """Replace every :class:`Sourced` in a nested structure by its value."""
    if isinstance(tree, Sourced):
        return unwrap(tree.value)
    if isinstance(tree, Mapping):
        return {k: unwrap(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(unwrap(v) for v in tree)
    return tree


def sources(tree: Any, prefix: str = "") -> dict[str, str]:
    """Flatten a nested config to ``{"a.b": source}`` for every sourced constant."""
    out: dict[str, str] = {}
    if isinstance(tree, Sourced):
        out[prefix] = tree.source
    elif isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(sources(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def build(cls: type[C], params: Mapping[str, Any] | None, what: str = "") -> C:
    """Construct dataclass ``cls`` from ``params``; unknown keys are an error, never ignored."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    params = dict(unwrap(params or {}))
    names = [f.name for f in fields(cls) if f.init]
    unknown = [k for k in params if k not in names]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1, cutoff=0.5)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown config key(s) for {what or cls.__name__}: {', '.join(hints)}. "
            f"Valid keys: {', '.join(names)}"
        )
    try:
        return cls(**params)
    except TypeError as exc:  # missing required keys
        raise ConfigError(f"invalid config for {what or cls.__name__}: {exc}") from None


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses / Sourced / numpy scalars to plain JSON types."""
    if isinstance(obj, Sourced):
        return {"value": to_jsonable(obj.value), "source": obj.source}
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return "nan"
    return obj


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of the canonical JSON form of ``obj`` (sources excluded, so a re-cited
    constant keeps its hash)."""
    payload = json.dumps(to_jsonable(unwrap(obj)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def replace(obj: C, **changes: Any) -> C:
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
