"""Suites, experiments and their resolution into hashed trial configs.

A :class:`Suite` is a versioned list of :class:`Experiment` s.  An experiment holds a base
config whose constants are :class:`~benchmark.config.Sourced` and per-scale overrides; it
resolves at a scale (``full`` | ``small`` | ``smoke``) and a trial index into a
:class:`TrialConfig`, whose hash names the trial in the result store and the training cache.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from benchmark.config import ConfigError, Sourced, sources, stable_hash, unwrap
from benchmark.rng import derive_seed

SCALES = ("full", "small", "smoke")

#: The keys an experiment config may have; anything else is an error.
CONFIG_KEYS = {
    "dataset": "{'name': registered dataset, 'params': {...}}",
    "attack": "{'name': registered attack, 'params': {...}}",
    "featurizer": "{'name': registered featurizer, 'params': {...}}",
    "model": "{'name': registered model, 'params': {...}}",
    "train": "TrainConfig fields",
    "protocol": "{'name': protocol, 'params': {...}}",
    "trials": "number of seeded trials",
}


@dataclass(frozen=True)
class MethodSpec:
    """A method in an experiment: ``kind`` is the registry (``defenses`` / ``target_rankers``)."""

    label: str
    name: str
    kind: str = "defenses"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config: Mapping[str, Any]
    methods: tuple[MethodSpec, ...]
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    comparisons: tuple[tuple[str, str], ...] = ()  # (a, b): report the paired difference a - b
    paper_reference: str = ""  # where the experiment is in the papers

    def __post_init__(self) -> None:
        _check_keys(self.config, f"experiment {self.name!r}")
        for scale, override in self.scales.items():
            if scale not in SCALES:
                raise ConfigError(f"experiment {self.name!r}: unknown scale {scale!r}; use {SCALES}")
            _check_keys(override, f"experiment {self.name!r} scale {scale!r}")
        labels = [m.label for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"experiment {self.name!r}: duplicate method labels {labels}")
        for a, b in self.comparisons:
            if a not in labels or b not in labels:
                raise ConfigError(f"experiment {self.name!r}: comparison ({a}, {b}) names unknown methods")

    def resolve(self, scale: str, trial: int, suite_seed: int) -> "TrialConfig":
        if scale not in SCALES:
            raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        merged = deep_merge(self.config, self.scales.get(scale, {}))
        seed = derive_seed(suite_seed, self.name, trial)
        return TrialConfig(experiment=self.name, scale=scale, trial=trial, seed=seed, config=merged)

    def num_trials(self, scale: str) -> int:
        merged = deep_merge(self.config, self.scales.get(scale, {}))
        return int(unwrap(merged.get("trials", 1)))


@dataclass(frozen=True)
class TrialConfig:
    experiment: str
    scale: str
    trial: int
    seed: int
    config: Mapping[str, Any]

    @property
    def values(self) -> dict[str, Any]:
        return unwrap(dict(self.config))

    @property
    def hash(self) -> str:
        """Hash of everything that determines the trial's data and trained model.  The number of
        trials does not: changing it must not invalidate finished trials or cached training."""
        values = {k: v for k, v in self.values.items() if k != "trials"}
        return stable_hash({"config": values, "seed": self.seed})

    def sources(self) -> dict[str, str]:
        return sources(dict(self.config))

    def section(self, key: str) -> dict[str, Any]:
        v = self.values.get(key)
        if v is None:
            raise ConfigError(f"experiment {self.experiment!r} has no {key!r} section")
        return v


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    description: str
    experiments: tuple[Experiment, ...]
    seed: int = 0

    def experiment(self, name: str) -> Experiment:
        for e in self.experiments:
            if e.name == name:
                return e
        raise ConfigError(f"suite {self.name!r} has no experiment {name!r}; "
                          f"it has {[e.name for e in self.experiments]}")


def _check_keys(cfg: Mapping[str, Any], what: str) -> None:
    unknown = [k for k in cfg if k not in CONFIG_KEYS]
    if unknown:
        raise ConfigError(f"{what}: unknown config key(s) {unknown}; valid keys: {list(CONFIG_KEYS)}")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``override`` wins.  A Sourced override replaces the whole value."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and not isinstance(v, Sourced) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
