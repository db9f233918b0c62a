"""Protocol 2, target identification (paper 000 Sec. 6.3, Fig. 7).

The analysis set mixes clean non-targets with successful targets (targets the final model
predicts as y_adv and, for triggered attacks, classifies correctly without the trigger, as the
reference code selects them).  Every ranker scores every candidate; the metrics are AUPRC with
targets as positives and the rank of the best-ranked target.  All rankers of a trial see the same
analysis set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import MethodResult, Protocol
from benchmark.metrics import auprc, target_rank
from benchmark.protocols.common import make_evidence
from benchmark.registry import protocols
from benchmark.trial import PreparedTrial


@dataclass(frozen=True)
class Params:
    n_non_targets: int = 250  # reference-code TOT_CL_DETECT (CIFAR backdoor); speech uses 220
    n_targets: int = 35  # reference-code TOT_BD_DETECT (CIFAR backdoor); single-target attacks: 1

    def __post_init__(self) -> None:
        if self.n_non_targets < 1 or self.n_targets < 1:
            raise ValueError("the analysis set needs at least one target and one non-target")


@dataclass
class State:
    inputs: torch.Tensor
    predicted: torch.Tensor
    is_target: np.ndarray
    target_ids: np.ndarray  # indices into the attack's targets
    non_target_ids: np.ndarray  # indices into the attack's non-targets


@protocols.register("target-identification",
                    "Rank an analysis set of test inputs: AUPRC of the targets, target rank (paper 000 Sec. 6.3)")
class TargetIdentification(Protocol):
    Params = Params
    method_kinds = ("target_rankers",)

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> State | None:
        params = self.params
        if len(p.successful_targets) == 0:
            return None
        t_ids = rng.choice(p.successful_targets, size=min(params.n_targets, len(p.successful_targets)),
                           replace=False)
        n_nt = min(params.n_non_targets, len(p.non_targets.labels))
        nt_ids = rng.choice(len(p.non_targets.labels), size=n_nt, replace=False)
        inputs = torch.cat([p.targets.inputs[torch.as_tensor(t_ids)], p.non_targets.inputs[torch.as_tensor(nt_ids)]])
        is_target = np.r_[np.ones(len(t_ids), dtype=bool), np.zeros(n_nt, dtype=bool)]
        order = rng.permutation(len(is_target))  # candidates carry no positional information
        inputs, is_target = inputs[torch.as_tensor(order)], is_target[order]
        return State(inputs, p.predict(inputs), is_target, np.sort(t_ids), np.sort(nt_ids))

    def evaluate(self, p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
        ev = make_evidence(p, method.requires | {"queries"}, rng, state.inputs, state.predicted)
        scores = np.asarray(method.rank(ev), dtype=np.float64)
        if scores.shape != (len(state.is_target),):
            raise ValueError(f"a ranker must return one score per candidate; got shape {scores.shape}")
        return MethodResult(
            metrics={"auprc": auprc(state.is_target, scores), "target_rank": target_rank(state.is_target, scores)},
            scores=scores, granted=sorted(ev.granted),
            extra={"n_targets": int(state.is_target.sum()), "n_non_targets": int((~state.is_target).sum())},
        )
