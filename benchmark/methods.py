"""Building a method (defense or target ranker) from its spec, through the registries only."""
from __future__ import annotations

import json
from typing import Any

from benchmark.api import ORACLE_NEEDS
from benchmark.config import ConfigError, stable_hash, to_jsonable
from benchmark.experiment import MethodSpec
from benchmark.registry import ALL

#: Registries whose entries are methods an experiment evaluates.
METHOD_KINDS = ("defenses", "target_rankers")


def build_method(spec: MethodSpec) -> Any:
    """Instantiate the method; an unknown name, kind or parameter (or a wrongly typed one) is a
    :class:`~benchmark.config.ConfigError` naming the method, raised before any work."""
    if spec.kind not in METHOD_KINDS:
        raise ConfigError(f"method {spec.label!r}: kind {spec.kind!r} is not a method kind; "
                          f"use one of {list(METHOD_KINDS)}")
    cls = ALL[spec.kind].get(spec.name)
    if not isinstance(spec.params, dict):
        raise ConfigError(f"method {spec.label!r}: parameters must be a JSON object "
                          f"(name -> value), got {type(spec.params).__name__} {spec.params!r}")
    try:
        return cls(**dict(spec.params))
    except ConfigError as exc:
        raise ConfigError(f"method {spec.label!r} ({spec.kind} {spec.name!r}): {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method {spec.label!r} ({spec.kind} {spec.name!r}): invalid parameters "
                          f"{json.dumps(to_jsonable(dict(spec.params)), default=str)}: {exc}") from None


def method_hash(spec: MethodSpec) -> str:
    """Hash of what determines a method's output: kind, registered name and resolved parameters
    (part of every record's key, so a changed parameter never reuses an old record)."""
    return stable_hash({"kind": spec.kind, "name": spec.name, "params": dict(spec.params)}, length=10)


def oracle_needs(requires: frozenset[str]) -> list[str]:
    return sorted(requires & ORACLE_NEEDS)
