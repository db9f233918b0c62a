"""Protocol 3b, influence filtering on non-adversarial data (paper 000 Sec. 4.5, Fig. 4).

A test example z_filt is drawn uniformly among test examples with a moderate misclassification
rate (10-20%) across several retrainings from the trial's theta_0 (and which the trial's final
model classifies correctly, so its predicted label is its true label).  For each method and each
percentage p, the method's top p% of the training set for z_filt is removed, ``n_retrain`` models
are retrained from the same theta_0 on what is left, and the metric
``misclassification_rate@p`` is z_filt's error rate across them (higher = the method found more
influential training data).  The ``random`` defense is the control.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.protocols.common import MethodResult, make_evidence
from benchmark.rng import torch_rng
from benchmark.trial import PreparedTrial
from benchmark.training import train

METHOD_KINDS = ("defenses",)
NOTHING_TO_EVALUATE = "no test example had a misclassification rate in the selection range"


@dataclass(frozen=True)
class Params:
    percents: tuple[float, ...] = (1, 5, 10, 20, 30)  # paper 000 Fig. 4 (reference FILT_FRACS)
    n_retrain: int = 20  # paper 000 Sec. 4.5: 20 models per method per trial
    n_selection_models: int = 30  # reference-code NUM_INIT_TRAIN
    mis_rate_low: float = 0.1  # paper 000 Sec. 4.5: moderate misclassification rate 10-20%
    mis_rate_high: float = 0.2

    def __post_init__(self) -> None:
        if not self.percents or any(not 0 < p < 100 for p in self.percents):
            raise ValueError("percents must be in (0, 100)")
        if self.n_retrain < 1 or self.n_selection_models < 1:
            raise ValueError("n_retrain and n_selection_models must be >= 1")
        if not 0 <= self.mis_rate_low <= self.mis_rate_high <= 1:
            raise ValueError("need 0 <= mis_rate_low <= mis_rate_high <= 1")


@dataclass
class State:
    params: Params
    index: int  # index into the clean test set
    x: torch.Tensor
    y: torch.Tensor
    selection_mis_rate: float


def _retrain(p: PreparedTrial, keep: np.ndarray, *seed_keys) -> dict:
    idx = torch.as_tensor(np.flatnonzero(keep))
    return train(p.model_factory(), p.train.inputs[idx], p.train.labels[idx], p.run.config,
                 generator=torch_rng(p.tc.seed, *seed_keys), theta0=p.run.theta0).final


def setup(p: PreparedTrial, params: Params, rng: np.random.Generator) -> State | None:
    keep = np.ones(len(p.train.labels), dtype=bool)
    wrong = np.zeros(len(p.test.labels))
    for i in range(params.n_selection_models):
        final = _retrain(p, keep, "filter-select", i)
        wrong += (p.predict(p.test.inputs, final) != p.test.labels).numpy()
    rate = wrong / params.n_selection_models
    correct_now = (p.predict(p.test.inputs) == p.test.labels).numpy()
    eligible = np.flatnonzero((rate >= params.mis_rate_low) & (rate <= params.mis_rate_high) & correct_now)
    if len(eligible) == 0:
        return None
    j = int(rng.choice(eligible))
    return State(params, j, p.test.inputs[j : j + 1], p.test.labels[j : j + 1], float(rate[j]))


def evaluate(p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
    ev = make_evidence(p, method.requires, rng, state.x, state.y)
    scores = np.asarray(method.score(ev), dtype=np.float64).reshape(len(p.train.labels), -1)[:, 0]
    order = np.argsort(-scores, kind="stable")
    metrics = {}
    for pct in state.params.percents:
        keep = np.ones(len(scores), dtype=bool)
        keep[order[: int(round(pct / 100 * len(scores)))]] = False
        wrong = [int(p.predict(state.x, _retrain(p, keep, "filter", pct, i))[0] != state.y[0])
                 for i in range(state.params.n_retrain)]
        metrics[f"misclassification_rate@{pct:g}%"] = float(np.mean(wrong))
    return MethodResult(metrics=metrics, scores=scores, granted=sorted(ev.granted),
                        extra={"z_filt_index": state.index, "selection_mis_rate": state.selection_mis_rate})
