"""Protocol 1, adversarial-set identification (paper 000 Sec. 4.1, 6.2; Fig. 1, 6).

For a known target, drawn uniformly at random among the trial's successful targets (the same
target for every method of a trial, so comparisons are paired), every method scores every
training example; the metric is AUPRC with D_adv as the positive class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import MethodResult, Protocol
from benchmark.metrics import auprc
from benchmark.protocols.common import one_target_scores, make_evidence
from benchmark.registry import protocols
from benchmark.trial import PreparedTrial


@dataclass(frozen=True)
class Params:
    """No parameters yet: one random successful target per trial (paper 000 Sec. 4.1)."""


@dataclass
class State:
    target_index: int  # index into the attack's targets
    query_inputs: torch.Tensor
    query_labels: torch.Tensor


@protocols.register("adversarial-set", "AUPRC of D_adv for one known target (paper 000 Sec. 4.1, Fig. 1, 6)")
class AdversarialSet(Protocol):
    Params = Params

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> State | None:
        if len(p.successful_targets) == 0:
            return None
        j = int(rng.choice(p.successful_targets))
        x = p.targets.inputs[j : j + 1]
        return State(j, x, p.predict(x))  # the final model's predicted label (paper 000 Sec. 2)

    def evaluate(self, p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
        ev = make_evidence(p, method.requires, rng, state.query_inputs, state.query_labels)
        scores = one_target_scores(method, ev)
        return MethodResult(metrics={"auprc": auprc(p.is_adv, scores)}, scores=scores,
                            granted=sorted(ev.granted), extra={"target_index": state.target_index})
