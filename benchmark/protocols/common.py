"""Shared protocol plumbing: building a method from its spec and handing it only what it declared."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmark.experiment import MethodSpec
from benchmark.registry import ALL
from benchmark.trial import PreparedTrial
from defenses.base import ORACLE_NEEDS, Evidence


@dataclass
class MethodResult:
    metrics: dict[str, float]
    scores: np.ndarray | None
    granted: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def build_method(spec: MethodSpec):
    if spec.kind not in ALL:
        raise ValueError(f"method {spec.label!r}: unknown kind {spec.kind!r}; use one of {list(ALL)}")
    cls = ALL[spec.kind].get(spec.name)
    return cls(**dict(spec.params))


def make_evidence(p: PreparedTrial, requires: frozenset[str], rng: np.random.Generator,
                  query_inputs: torch.Tensor | None = None, query_labels: torch.Tensor | None = None,
                  train_subset: np.ndarray | None = None, run=None,
                  final_params: dict | None = None) -> Evidence:
    """An Evidence with exactly the things in ``requires`` (the others stay withheld)."""
    run = run if run is not None else p.run
    x, y = p.train.inputs, p.train.labels
    if train_subset is not None:
        idx = torch.as_tensor(train_subset, dtype=torch.long)
        x, y = x[idx], y[idx]
    ev = Evidence(train_inputs=x, train_labels=y, num_classes=p.attacked.num_classes, rng=rng,
                  granted=frozenset(requires), extras={"influence_memo": p.memo})
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
    if "clean_validation" in requires:
        raise NotImplementedError("no protocol provides a clean validation set yet")
    return ev


def oracle_needs(requires: frozenset[str]) -> list[str]:
    return sorted(requires & ORACLE_NEEDS)
