"""Configuration helpers: sourced constants, strict dataclass construction, stable hashing.

Every constant in a suite records where it comes from (DESIGN.md, "Core contracts"):

* ``paper:000 Sec. 4.1`` -- stated in a paper (paper id + section/table),
* ``reference-code`` -- read in the authors' code (see ../shared/reference/original_code.md),
* ``ours`` -- chosen by this project before any defense was measured on it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

from benchmark.suggest import close_matches

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
    """Construct dataclass ``cls`` from ``params``.  An unknown key, a missing required key or a
    value of the wrong type (against the field's annotation) is a :class:`ConfigError` naming
    the key; nothing is ignored."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    what = what or cls.__name__
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f"parameters of {what} must be a mapping (JSON object), got "
                          f"{type(params).__name__} {params!r}")
    params = dict(unwrap(params or {}))
    init = [f for f in fields(cls) if f.init]
    names = [f.name for f in init]
    unknown = [k for k in params if k not in names]
    if unknown:
        hints = []
        for k in unknown:
            close = close_matches(k, names, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown config key(s) for {what}: {', '.join(hints)}. Valid keys: {', '.join(names)}")
    missing = [f.name for f in init if f.name not in params and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"missing required config key(s) for {what}: {', '.join(map(repr, missing))}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: no type check
        hints = {}
    for k, v in params.items():
        if k in hints and not type_matches(v, hints[k]):
            raise ConfigError(f"config key {k!r} of {what} must be {_type_name(hints[k])}, got "
                              f"{type(v).__name__} {v!r}")
    try:
        return cls(**params)
    except ConfigError as exc:
        raise ConfigError(f"invalid config for {what}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid config for {what}: {exc}") from None


def type_matches(value: Any, hint: Any) -> bool:
    """Whether a JSON-like ``value`` fits annotation ``hint`` (ints are accepted for floats,
    lists for sequences and tuples; bools are not numbers)."""
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(type_matches(v, a) for v, a in zip(value, args))
        item = args[0] if args else Any
        return all(type_matches(v, item) for v in value)
    if origin in (dict, Mapping, typing.Mapping) or hint in (dict,):
        if not isinstance(value, Mapping):
            return False
        if len(args) == 2:
            return all(type_matches(k, args[0]) and type_matches(v, args[1]) for k, v in value.items())
        return True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation we do not check (Callable, TypeVar, ...)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_call_params(fn: Callable, params: Mapping[str, Any] | None, skip: Sequence[str], what: str) -> None:
    """Raise :class:`ConfigError` when ``params`` holds a key that ``fn`` does not take (other than
    ``skip``, which the harness passes) or misses a required one."""
    sig = inspect.signature(fn)
    valid = [n for n, p in sig.parameters.items() if n not in skip
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    params = dict(unwrap(params or {}))
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for {what}; valid: {valid}")
    missing = [n for n in valid if sig.parameters[n].default is inspect.Parameter.empty and n not in params]
    if missing:
        raise ConfigError(f"missing parameter(s) {missing} for {what}")


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
