"""Protocol 4, remove and retrain (paper 001 Sec. 4.1): each method scores every training
example, the removal rule (default ``top-k`` with ``1.5 eps N``, the paper's "remove 1.5 eps N
examples") takes out the highest-scored ones, a model is retrained on the rest from the trial's
theta_0 (the same initialisation and, for every method, the same batch-order seed, so methods
are paired), and the metrics are the paper's -- attack success on all targets (ASR, the one
definition of :meth:`PreparedTrial.attack_success`: eligible = classified correctly when clean by
the *attacked* model) and clean accuracy after retraining -- plus % of D_adv and of D_cl removed
and the AUPRC of the method's scores against D_adv (paper 000's metric), so that paper 000's and
paper 001's methods meet on both.

Methods that need a query (paper 000's GAS and the other target-driven estimators) get one
target drawn uniformly among the trial's successful targets (the same for every method of a
trial, as in ``adversarial-set``; among all targets when none succeeded, recorded as
``target_successful: False``); the record says what each method was given.  The ``none``
defense removes nothing and reports the attacked model's own ASR and clean accuracy (no
retraining).
"""
from __future__ import annotations

import hashlib

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from benchmark.api import MethodResult, Protocol
from benchmark.config import ConfigError
from benchmark.metrics import accuracy, auprc, removal_percentages
from benchmark.protocols.common import one_target_scores, build_removal, make_evidence, retrain
from benchmark.registry import protocols
from benchmark.trial import PreparedTrial


@dataclass(frozen=True)
class Params:
    #: paper 001 Sec. 4.1: "the defender removes 1.5 eps N training examples"
    removal: Mapping[str, Any] = field(default_factory=lambda: {"name": "top-k", "params": {"factor": 1.5}})
    n_retrain: int = 1  # paper 001 reports one retrained model per run

    def __post_init__(self) -> None:
        if self.n_retrain < 1:
            raise ConfigError("remove-and-retrain: n_retrain must be >= 1")


@dataclass
class State:
    target_index: int | None  # index into the attack's targets (for methods that need a query)
    query_inputs: torch.Tensor | None
    query_labels: torch.Tensor | None
    target_successful: bool  # False: no target was flipped (the attack failed), any target is the query


@protocols.register("remove-and-retrain", "Remove each method's top 1.5 eps N, retrain; ASR, clean accuracy, "
                                          "% removed and AUPRC (paper 001 Sec. 4.1, Table 1)")
class RemoveAndRetrain(Protocol):
    Params = Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.rule = build_removal(self.params.removal, "remove-and-retrain removal")

    def check_method(self, method: Any) -> None:
        """Every method, and the ``none`` defense too (the table's "no defense" column)."""

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> State:
        pool = p.successful_targets if len(p.successful_targets) else np.arange(len(p.attacked.y_adv))
        if len(pool) == 0:
            return State(None, None, None, False)
        j = int(rng.choice(pool))
        x = p.targets.inputs[j : j + 1]
        return State(j, x, p.predict(x), bool(len(p.successful_targets)))

    def evaluate(self, p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
        if not getattr(method, "scores_examples", True):
            hits, eligible = p.attack_success()
            metrics = {"attack_success_rate": hits / eligible if eligible else float("nan"),
                       "clean_accuracy": p.trial_metrics["clean_accuracy"],
                       "pct_adv_removed": 0.0, "pct_clean_removed": 0.0}
            return MethodResult(metrics=metrics, scores=None, granted=[], extra={"retrained": False})
        if "queries" in method.requires and state.query_inputs is None:
            raise ValueError("remove-and-retrain: no successful target to hand a method that needs a query")
        ev = make_evidence(p, method.requires, rng, state.query_inputs, state.query_labels)
        scores = one_target_scores(method, ev)
        budget = int(p.attacked.is_adv.sum()) if self.rule.needs_budget else None
        removed = self.rule.select(scores, rng, budget)
        pct_adv, pct_cl = removal_percentages(removed, p.is_adv)
        asr, acc, reused = [], [], 0
        for i in range(self.params.n_retrain):
            outcome, was_memo = self._retrained_outcome(p, removed, i)
            asr.append(outcome[0])
            acc.append(outcome[1])
            reused += was_memo
        metrics = {"attack_success_rate": float(np.mean(asr)), "clean_accuracy": float(np.mean(acc)),
                   "clean_accuracy_change": float(np.mean(acc)) - p.trial_metrics["clean_accuracy"],
                   "pct_adv_removed": pct_adv, "pct_clean_removed": pct_cl, "auprc": auprc(p.is_adv, scores)}
        return MethodResult(metrics=metrics, scores=scores, granted=sorted(ev.granted),
                            extra={"target_index": state.target_index, "target_successful": state.target_successful,
                                   "n_removed": int(removed.sum()),
                                   "removal": self.rule.describe(), "retrained": True,
                                   "retrains_reused": reused})

    @staticmethod
    def _retrained_outcome(p: PreparedTrial, removed: np.ndarray, i: int) -> tuple[tuple[float, float], bool]:
        """(ASR, clean accuracy) of the model retrained without ``removed`` (retrain ``i``), and
        whether it came from the trial's memo: two methods of a trial that remove the same set get
        the same retrained model (same kept set, theta_0 and batch-order seed), so it is trained once
        (e.g. ``cosin`` and ``gas``, whose scores are identical)."""
        key = ("remove-and-retrain", hashlib.sha256(np.packbits(removed).tobytes()).hexdigest(), len(removed), i)
        memo = p.memo.setdefault("retrained", {})
        if key in memo:
            return memo[key], True
        final = retrain(p, ~removed, "remove-and-retrain", i).final
        hits, eligible = p.attack_success(final)
        memo[key] = (hits / eligible if eligible else float("nan"),
                     accuracy(p.predict(p.test.inputs, final).numpy(), p.test.labels.numpy()))
        return memo[key], False
