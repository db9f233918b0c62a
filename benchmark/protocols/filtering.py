"""Protocol 3b, influence filtering on non-adversarial data (paper 000 Sec. 4.5, Fig. 4).

A test example z_filt is drawn uniformly among test examples with a moderate misclassification
rate (10-20%) across several retrainings from the trial's theta_0 (and which the trial's final
model classifies correctly, so its predicted label is its true label).  For each method and each
removal rule (by default ``top-percent`` at each of Fig. 4's percentages), the examples the rule
selects from the method's scores for z_filt are removed, ``n_retrain`` models are retrained from
the same theta_0 on what is left, and the metric ``misclassification_rate@<rule>`` is z_filt's
error rate across them (higher = the method found more influential training data).  The
``random`` defense is the control.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from benchmark.api import MethodResult, Protocol
from benchmark.config import ConfigError
from benchmark.protocols.common import build_removal, make_evidence, retrain
from benchmark.registry import protocols
from benchmark.trial import PreparedTrial

#: paper 000 Fig. 4 (reference-code FILT_FRACS): remove the top 1, 5, 10, 20, 30 %
FIG4_PERCENTS = (1, 5, 10, 20, 30)


@dataclass(frozen=True)
class Params:
    removals: Sequence[Mapping[str, Any]] = field(default_factory=lambda: tuple(
        {"name": "top-percent", "params": {"percent": p}} for p in FIG4_PERCENTS))
    n_retrain: int = 20  # paper 000 Sec. 4.5: 20 models per method per trial
    n_selection_models: int = 30  # reference-code NUM_INIT_TRAIN
    mis_rate_low: float = 0.1  # paper 000 Sec. 4.5: moderate misclassification rate 10-20%
    mis_rate_high: float = 0.2

    def __post_init__(self) -> None:
        if not self.removals:
            raise ConfigError("filtering: removals must name at least one removal rule")
        if self.n_retrain < 1 or self.n_selection_models < 1:
            raise ConfigError("filtering: n_retrain and n_selection_models must be >= 1")
        if not 0 <= self.mis_rate_low <= self.mis_rate_high <= 1:
            raise ConfigError("filtering: need 0 <= mis_rate_low <= mis_rate_high <= 1")


@dataclass
class State:
    index: int  # index into the clean test set
    x: torch.Tensor
    y: torch.Tensor
    selection_mis_rate: float


@protocols.register("filtering", "Remove each method's top-scored training data for a test example, retrain, "
                                 "misclassification rate (paper 000 Sec. 4.5, Fig. 4)")
class Filtering(Protocol):
    Params = Params
    nothing_to_evaluate = "no test example had a misclassification rate in the selection range"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.rules = [build_removal(r, "filtering removal") for r in self.params.removals]
        labels = [r.describe() for r in self.rules]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"filtering: two removal rules have the same setting {labels}")
        if any(r.needs_budget for r in self.rules):
            raise ConfigError("filtering runs on clean data: no removal rule may need the poisoning budget")

    def probe_params(self) -> dict[str, Any]:
        """A probe's model has trained a few steps: any misclassification rate is eligible, one
        selection model and one retraining per rule reach every method."""
        return {"mis_rate_low": 0.0, "mis_rate_high": 1.0, "n_selection_models": 1, "n_retrain": 1}

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> State | None:
        prm = self.params
        keep = np.ones(len(p.train.labels), dtype=bool)
        wrong = np.zeros(len(p.test.labels))
        for i in range(prm.n_selection_models):
            final = retrain(p, keep, "filter-select", i).final
            wrong += (p.predict(p.test.inputs, final) != p.test.labels).numpy()
        rate = wrong / prm.n_selection_models
        correct_now = (p.predict(p.test.inputs) == p.test.labels).numpy()
        eligible = np.flatnonzero((rate >= prm.mis_rate_low) & (rate <= prm.mis_rate_high) & correct_now)
        if len(eligible) == 0:
            return None
        j = int(rng.choice(eligible))
        return State(j, p.test.inputs[j : j + 1], p.test.labels[j : j + 1], float(rate[j]))

    def evaluate(self, p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
        ev = make_evidence(p, method.requires, rng, state.x, state.y)
        scores = np.asarray(method.score(ev), dtype=np.float64).reshape(len(p.train.labels), -1)[:, 0]
        metrics = {}
        for rule in self.rules:
            label = rule.describe()
            keep = ~rule.select(scores, rng)
            wrong = [int(p.predict(state.x, retrain(p, keep, "filter", label, i).final)[0] != state.y[0])
                     for i in range(self.params.n_retrain)]
            metrics[f"misclassification_rate@{label}"] = float(np.mean(wrong))
        return MethodResult(metrics=metrics, scores=scores, granted=sorted(ev.granted),
                            extra={"z_filt_index": state.index, "selection_mis_rate": state.selection_mis_rate})
