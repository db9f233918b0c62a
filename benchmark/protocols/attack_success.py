"""Protocol 0, attack success: train on the attacked data and measure the attack alone, before
any defense runs (DESIGN.md, scales: calibrate attack strength on ASR alone).

The "method" is the attack itself (no defense): every experiment using this protocol has one
method, the ``none`` defense, which is never asked for scores.  Metrics: attack success rate over
all targets and clean test accuracy, with the counts behind them so reports can give binomial
(Wilson) confidence intervals over test inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.protocols.common import MethodResult
from benchmark.trial import PreparedTrial

METHOD_KINDS = ("defenses",)


@dataclass(frozen=True)
class Params:
    """No parameters."""


@dataclass
class State:
    pass


def setup(p: PreparedTrial, params: Params, rng: np.random.Generator) -> State:
    return State()


def evaluate(p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
    pred_t = p.predict(p.targets.inputs).numpy()
    pred_c = p.predict(p.test.inputs).numpy()
    n_t, n_c = len(pred_t), len(pred_c)
    hits = int((pred_t == p.attacked.y_adv.numpy()).sum())
    correct = int((pred_c == p.test.labels.numpy()).sum())
    return MethodResult(
        metrics={"asr_no_defense": hits / n_t, "clean_accuracy": correct / n_c},
        scores=None, granted=[],
        extra={"asr_counts": [hits, n_t], "clean_counts": [correct, n_c],
               "n_adv": p.attacked.n_adv, "n_train": len(p.train.labels),
               "poison_ratio": p.attacked.n_adv / len(p.train.labels),
               "training_wall_time_s": p.run_wall_time_s},
    )
