"""Protocol 0, attack success: train on the attacked data and measure the attack alone, before
any defense runs (DESIGN.md, scales: calibrate attack strength on ASR alone).

The "method" is the attack itself: every experiment using this protocol has one method, the
``none`` defense, which is never asked for scores.  Attack success uses the one definition of
:meth:`benchmark.trial.PreparedTrial.attack_success` (a target counts only if the attacked
model classifies its clean version correctly); the per-trial counts are recorded so reports can
give the pooled count beside the mean over trials and its t-interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.api import MethodResult, Protocol
from benchmark.protocols.common import require_no_scoring
from benchmark.registry import protocols
from benchmark.trial import PreparedTrial


@dataclass(frozen=True)
class Params:
    """No parameters."""


@protocols.register("attack-success", "The attack alone: attack success rate and clean accuracy, no defense")
class AttackSuccess(Protocol):
    Params = Params

    def check_method(self, method) -> None:
        require_no_scoring(method, "the attack-success protocol measures the attack alone")

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> dict:
        return {}

    def evaluate(self, p: PreparedTrial, state: dict, method, rng: np.random.Generator) -> MethodResult:
        hits, eligible = p.attack_success()
        n_c = len(p.test.labels)
        correct = int(round(p.trial_metrics["clean_accuracy"] * n_c))
        return MethodResult(
            metrics={"asr_no_defense": p.trial_metrics["asr_no_defense"],
                     "clean_accuracy": p.trial_metrics["clean_accuracy"]},
            scores=None, granted=[],
            extra={"asr_counts": [hits, eligible], "clean_counts": [correct, n_c],
                   "n_targets": len(p.attacked.y_adv), "n_adv": p.attacked.n_adv,
                   "n_train": len(p.train.labels), "poison_ratio": p.attacked.n_adv / len(p.train.labels),
                   "training_wall_time_s": p.run_wall_time_s},
        )
