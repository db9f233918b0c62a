"""Shared protocol plumbing: handing a method only what it declared, looking up removal rules,
and the one retrain helper every remove-and-retrain protocol uses."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from benchmark.api import Evidence, RemovalRule
from benchmark.api.evidence import TRIAL_METHODS
from benchmark.config import ConfigError, unwrap
from benchmark.data.types import select
from benchmark.registry import removal_rules
from benchmark.rng import torch_rng
from benchmark.training import TrainingRun, train
from benchmark.trial import PreparedTrial


def make_evidence(p: PreparedTrial, requires: frozenset[str], rng: np.random.Generator,
                  query_inputs: torch.Tensor | None = None, query_labels: torch.Tensor | None = None,
                  train_subset: np.ndarray | None = None, run: TrainingRun | None = None,
                  final_params: dict | None = None) -> Evidence:
    """An Evidence with exactly the things in ``requires`` (the others stay withheld)."""
    run = run if run is not None else p.run
    x, y = p.train.inputs, p.train.labels
    if train_subset is not None:
        idx = torch.as_tensor(train_subset, dtype=torch.long)
        x, y = x[idx], y[idx]
    ev = Evidence(train_inputs=x, train_labels=y, num_classes=p.attacked.num_classes, rng=rng,
                  granted=frozenset(requires),
                  extras={"influence_memo": p.memo, TRIAL_METHODS: p.memo.get(TRIAL_METHODS, ())})
    if requires & {"model", "checkpoints"}:
        ev.model_factory = p.model_factory
        ev.train_config = run.config  # hyperparameters (e.g. weight decay) are the defender's own
    if "model" in requires:
        ev.final_params = final_params if final_params is not None else run.final
    if "checkpoints" in requires:
        ev.training_run = run
    if "queries" in requires:
        if query_inputs is None:
            raise ValueError("this protocol has no queries for a method that requires them")
        ev.query_inputs, ev.query_labels = query_inputs, query_labels
    if "poison_budget" in requires:
        ev.poison_budget = int(p.attacked.is_adv.sum()) if train_subset is None else int(
            p.attacked.is_adv.numpy()[train_subset].sum())
    if "raw_train_inputs" in requires:
        raw = p.attacked.train.inputs
        ev.raw_train_inputs = raw if train_subset is None else select(
            raw, torch.as_tensor(train_subset, dtype=torch.long))
    if "clean_validation" in requires:
        raise NotImplementedError("no protocol provides a clean validation set yet")
    return ev


def one_target_scores(method, ev: Evidence) -> np.ndarray:
    """``method``'s ``(n_train,)`` scores for a protocol's one target (a per-query method's single
    column, or a query-free method's vector)."""
    scores = np.asarray(method.score(ev), dtype=np.float64)
    if scores.ndim == 2:
        if scores.shape[1] != 1:
            raise ValueError(f"expected one score column for one target, got shape {scores.shape}")
        scores = scores[:, 0]
    return scores


def build_removal(spec: Mapping[str, Any] | str, what: str) -> RemovalRule:
    """The registered removal rule of ``spec`` (``{"name": ..., "params": {...}}`` or a name)."""
    spec = unwrap(spec)
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec or set(spec) - {"name", "params"}:
        raise ConfigError(f"{what}: a removal spec is {{'name': <removal rule>, 'params': {{...}}}}, "
                          f"got {spec!r}")
    return removal_rules.get(spec["name"])(**dict(spec.get("params") or {}))


def retrain(p: PreparedTrial, keep: np.ndarray, *seed_keys: Any) -> TrainingRun:
    """Retrain from the trial's theta_0 with its training config on the kept examples.  The
    batch order depends only on the trial seed and ``seed_keys``, so a method and its random
    control (same keys) see the same randomness."""
    idx = torch.as_tensor(np.flatnonzero(keep))
    return train(p.model_factory(), p.train.inputs[idx], p.train.labels[idx], p.run.config,
                 generator=torch_rng(p.tc.seed, *seed_keys), theta0=p.run.theta0)


def require_no_scoring(method, what: str) -> None:
    """Protocols that score nothing (the attack alone, training diagnostics) take only the
    ``none`` defense; ``what`` says what the protocol does instead, for the error."""
    if getattr(method, "scores_examples", True):
        raise ConfigError(f"{what}; its only method is the 'none' defense")
