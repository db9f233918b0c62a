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
from benchmark.suggest import did_you_mean

SCALES = ("full", "small", "smoke")

#: The keys an experiment config may have; anything else is an error.
CONFIG_KEYS = {
    "dataset": "{'name': registered dataset, 'params': {...}}",
    "attack": "{'name': registered attack, 'params': {...}}",
    "featurizer": "{'name': registered featurizer, 'params': {...}}",
    "model": "{'name': registered model, 'params': {...}}",
    "train": "TrainConfig fields",
    "pretrain": "{'classes': held-out class ids, 'n_per_class': ..., 'train': {TrainConfig overrides}} (optional)",
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
    #: experiments of one seed group get the same trial seeds, so equal data / attack / model /
    #: training settings give the same poisons and the same trained model (one training per trial,
    #: shared by every protocol run on it); empty: the experiment's own name
    seed_group: str = ""
    #: scale -> why the experiment is not run there (:class:`NotRun`); listed, never substituted
    not_run: Mapping[str, "NotRun"] = field(default_factory=dict)

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
        for scale, why in self.not_run.items():
            if scale not in SCALES or not isinstance(why, NotRun):
                raise ConfigError(f"experiment {self.name!r}: not_run maps a scale in {SCALES} to a NotRun, "
                                  f"got {scale!r}: {why!r}")

    def resolve(self, scale: str, trial: int, suite_seed: int) -> "TrialConfig":
        if scale not in SCALES:
            raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        merged = deep_merge(self.config, self.scales.get(scale, {}))
        seed = derive_seed(suite_seed, self.seed_group or self.name, trial)
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
        """Hash of everything that determines the trial's results.  The number of trials does
        not: changing it must not invalidate finished trials or cached training."""
        values = {k: v for k, v in self.values.items() if k != "trials"}
        return stable_hash({"config": values, "seed": self.seed})

    @property
    def training_hash(self) -> str:
        """Hash of what determines the attacked data and the trained model: the config without
        the protocol (and the trial count), and the seed.  Experiments of one seed group that
        differ only in their protocol share it, hence one trained model per trial."""
        values = {k: v for k, v in self.values.items() if k not in ("trials", "protocol")}
        return stable_hash({"config": values, "seed": self.seed})

    def sources(self) -> dict[str, str]:
        return sources(dict(self.config))

    def section(self, key: str) -> dict[str, Any]:
        v = self.values.get(key)
        if v is None:
            raise ConfigError(f"experiment {self.experiment!r} has no {key!r} section")
        return v


#: Why an experiment or entry is not run at a scale (``python -m benchmark list`` shows it).
NOT_RUN_STATUSES = {
    "attack-not-successful": "attack not successful at this scale",
    "unavailable-offline": "data or model unavailable offline",
    "not-implemented": "not implemented yet",
    "deferred": "not run at this scale yet",
}


@dataclass(frozen=True)
class NotRun:
    """``status`` (a key of :data:`NOT_RUN_STATUSES`) and the reason, with its evidence."""

    status: str
    reason: str

    def __post_init__(self) -> None:
        if self.status not in NOT_RUN_STATUSES:
            raise ConfigError(f"NotRun status {self.status!r}; choose one of {sorted(NOT_RUN_STATUSES)}")

    def describe(self) -> str:
        return f"{NOT_RUN_STATUSES[self.status]}: {self.reason}"


@dataclass(frozen=True)
class Entry:
    """One table or figure of a paper: the experiments that reproduce it (names in the suite), or
    why there are none yet (``missing``)."""

    id: str  # selector for ``--only``, e.g. "000-fig1"
    paper: str  # "000" | "001"
    ref: str  # "Fig. 1", "Table 1", "suppl. F.6"
    title: str
    experiments: tuple[str, ...] = ()
    missing: NotRun | None = None  # the entry as a whole is not run at any scale
    #: (method label, why) for a column of the paper's table that no experiment of the entry runs
    #: (rendered as a note beside the paper's numbers for it)
    methods_not_run: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.experiments and self.missing is None:
            raise ConfigError(f"entry {self.id!r} has no experiments; say why with missing=NotRun(...)")


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    description: str
    experiments: tuple[Experiment, ...]
    seed: int = 0
    entries: tuple[Entry, ...] = ()  # the papers' tables and figures (the ``paper`` suite)
    #: reports flag an experiment whose mean ASR without defense is below this and hide its
    #: defense numbers (None: no gate, e.g. the attack-strength suite reports ASR itself)
    min_asr: float | None = None
    claims: tuple[Any, ...] = ()  # benchmark.claims.Claim: the papers' qualitative claims, tested by the report

    def __post_init__(self) -> None:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ConfigError(f"suite {self.name!r}: duplicate experiment names {names}")
        ids = [e.id for e in self.entries]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"suite {self.name!r}: duplicate entry ids {ids}")
        for entry in self.entries:
            unknown = [x for x in entry.experiments if x not in names]
            if unknown:
                raise ConfigError(f"suite {self.name!r}: entry {entry.id!r} names unknown experiments {unknown}")

    def entry(self, entry_id: str) -> Entry:
        for e in self.entries:
            if e.id == entry_id:
                return e
        ids = [e.id for e in self.entries]
        raise ConfigError(f"suite {self.name!r} has no entry {entry_id!r}{did_you_mean(entry_id, ids)} "
                          f"Entries: {', '.join(ids) or '(none)'}")

    def entries_of(self, experiment: str) -> list[Entry]:
        return [e for e in self.entries if experiment in e.experiments]

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
