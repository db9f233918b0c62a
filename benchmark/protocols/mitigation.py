"""Protocol 3a, target-driven mitigation (paper 000 Alg. 3, Sec. 5.3, 6.4, Table 1).

For a target (known, as in Table 1, or the top-ranked candidate of a target ranker, as in
end-to-end Alg. 2):

    while the stop test fails:                                    (Alg. 3, line 3)
        v     <- influence of every remaining training example on the target(s) (the method)
        sigma <- (v - median) / Q over remaining examples labelled with the target's label (Sec. 5.2)
        remove what the removal rule selects from sigma            (Alg. 3, line 6: sigma >= zeta)
        retrain from theta_0 on what is left                       (Alg. 3, line 7)
        anneal zeta                                                (Alg. 3, line 8)

Stop test (``stop``): ``"all_correct"`` (paper 000 footnote 14: "until all targets are
classified correctly", i.e. predicted as their true label; the default for known targets) or
``"label_changed"`` (no target predicted y_adv any more; the only test available when the target
came from a ranker, whose true label the defender does not know).

Annealing (``anneal_rule``): ``"every_round"`` multiplies zeta by ``anneal`` after every
retraining round (Alg. 3, line 8; the default); ``"when_empty"`` anneals only when a round
removes nothing (our earlier rule).  Under both, a round that removes nothing anneals zeta when it
can (down to ``min_zeta``) and does not retrain (the training set is unchanged); when zeta cannot
go lower either, the loop stops and hands the target to a human (``human_review``).  A
maximum-sanitization budget (Sec. 5.3, footnote 15) and a round limit do the same.

Several targets (footnote 14): v is averaged over them.  A random-removal control (the
``control`` removal rule, ``random`` by default) removes as many examples, retrains from the same
theta_0 with the same batch-order seed as the method's last round, and is recorded beside it.

The harness, not the method, runs this loop: the method is any registered per-query defense
(an influence estimator); the ranker for ``target_source="ranker"`` is a config value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from benchmark.anomaly import anomaly_scores
from benchmark.api import MethodResult, Protocol
from benchmark.config import ConfigError
from benchmark.metrics import accuracy, attack_success_rate, removal_percentages
from benchmark.protocols.common import build_removal, make_evidence, retrain
from benchmark.registry import protocols, target_rankers
from benchmark.trial import PreparedTrial

STOP_RULES = ("all_correct", "label_changed")
ANNEAL_RULES = ("every_round", "when_empty")
TARGET_SOURCES = ("known", "ranker")


@dataclass(frozen=True)
class Params:
    removal: Mapping[str, Any] = field(default_factory=lambda: {"name": "threshold", "params": {"zeta": 2.0}})
    # paper 000 Alg. 3 line 6; zeta = 2.0 is ours (the supplement's value is unknown; a Fig. 4
    # config of the reference code has CUTOFF_STDEV = 2, original_code.md Sec. 3.4)
    anneal: float = 1.0  # factor applied to zeta (1.0: no annealing; Alg. 3 line 8 "optionally")
    anneal_rule: str = "every_round"  # paper 000 Alg. 3 line 8
    min_zeta: float = 0.5  # ours: annealing floor
    max_rounds: int = 10  # ours
    max_removal_fraction: float = 0.05  # ours: maximum sanitization, fraction of D_tr (Sec. 5.3)
    n_targets: int = 1  # paper 000 Sec. 6.4 / Table 1: one randomly selected target
    stop: str = "all_correct"  # paper 000 footnote 14
    target_source: str = "known"  # "known" (Table 1) | "ranker" (Alg. 2: the ranker's top candidate)
    ranker: Mapping[str, Any] = field(default_factory=lambda: {"name": "fit", "params": {"estimator": "gas", "kappa": 10}})
    # for target_source="ranker": paper 000 Alg. 2 (FIT with GAS; kappa = reference-code ANOM_CUTOFF)
    ranker_non_targets: int = 50  # ours: for target_source="ranker", candidates besides the targets
    per_class_stats: bool = True  # Sec. 5.2: median and Q over examples labelled y_hat
    control: Mapping[str, Any] | None = field(default_factory=lambda: {"name": "random"})  # None: no control

    def __post_init__(self) -> None:
        if self.target_source not in TARGET_SOURCES:
            raise ConfigError(f"mitigation: target_source must be one of {TARGET_SOURCES}, got {self.target_source!r}")
        if self.stop not in STOP_RULES:
            raise ConfigError(f"mitigation: stop must be one of {STOP_RULES}, got {self.stop!r}")
        if self.anneal_rule not in ANNEAL_RULES:
            raise ConfigError(f"mitigation: anneal_rule must be one of {ANNEAL_RULES}, got {self.anneal_rule!r}")
        if self.target_source == "ranker" and self.stop == "all_correct":
            raise ConfigError("mitigation: with target_source='ranker' the defender does not know the "
                              "candidate's true label; set stop='label_changed'")
        if not 0 < self.anneal <= 1:
            raise ConfigError("mitigation: anneal must be in (0, 1]")
        if not 0 < self.max_removal_fraction <= 1 or self.max_rounds < 1 or self.n_targets < 1:
            raise ConfigError("mitigation: need max_removal_fraction in (0, 1], max_rounds >= 1, n_targets >= 1")


@dataclass
class State:
    target_inputs: torch.Tensor
    target_pred: torch.Tensor  # the label the attack induces (y_adv): the final model's prediction
    target_true: torch.Tensor  # true labels (for the stop test "all_correct" and the metrics)
    target_ids: np.ndarray  # indices into the attack's targets (empty: a ranker picked a non-target)
    identified_correctly: bool  # for target_source="ranker": was the top candidate a real target
    target_rank: float | None = None  # for target_source="ranker": the best real target's rank (1 = top)


@protocols.register("mitigation", "Target-driven mitigation, remove and retrain until the target flips back "
                                  "(paper 000 Alg. 3, Table 1)")
class Mitigation(Protocol):
    Params = Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        prm = self.params
        self.rule = build_removal(prm.removal, "mitigation removal")
        if prm.anneal < 1 and "zeta" not in vars(self.rule.config):
            raise ConfigError(f"mitigation: anneal < 1 changes the cutoff 'zeta', but removal rule "
                              f"{prm.removal!r} has no 'zeta' parameter")
        self.control = build_removal(prm.control, "mitigation control") if prm.control is not None else None
        self.ranker = None
        if prm.target_source == "ranker":
            r = dict(prm.ranker)
            self.ranker = target_rankers.get(r["name"])(**dict(r.get("params") or {}))

    def check_method(self, method) -> None:
        super().check_method(method)
        if not getattr(method, "per_query", False):
            raise ConfigError(f"mitigation needs a per-query influence estimator (one that requires "
                              f"'queries'); {type(method).__name__} is not")

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> State | None:
        prm = self.params
        if len(p.successful_targets) == 0:
            return None
        k = min(prm.n_targets, len(p.successful_targets))
        ids = np.sort(rng.choice(p.successful_targets, size=k, replace=False))
        if self.ranker is not None:
            return self._ranked_state(p, rng, ids)
        x = p.targets.inputs[torch.as_tensor(ids)]
        return State(x, p.predict(x), p.targets.labels[torch.as_tensor(ids)], ids, True)

    def _ranked_state(self, p: PreparedTrial, rng: np.random.Generator, ids: np.ndarray) -> State:
        """End-to-end Alg. 2: rank an analysis set and mitigate its top candidate.  Candidates are
        shuffled and ties at the top are broken with the trial rng, never in favour of targets."""
        n_nt = min(self.params.ranker_non_targets, len(p.non_targets.labels))
        nt = rng.choice(len(p.non_targets.labels), size=n_nt, replace=False)
        cand = torch.cat([p.targets.inputs[torch.as_tensor(ids)], p.non_targets.inputs[torch.as_tensor(nt)]])
        true = torch.cat([p.targets.labels[torch.as_tensor(ids)], p.non_targets.labels[torch.as_tensor(nt)]])
        order = torch.as_tensor(rng.permutation(len(cand)))
        cand, true = cand[order], true[order]
        is_target = (order < len(ids)).numpy()
        ev = make_evidence(p, self.ranker.requires | {"queries"}, rng, cand, p.predict(cand))
        scores = np.asarray(self.ranker(ev), dtype=np.float64)
        top = int(rng.choice(np.flatnonzero(scores == scores.max())))
        x = cand[top : top + 1]
        tid = ids[int(order[top])] if is_target[top] else None
        best = scores[is_target].max() if is_target.any() else -np.inf
        rank = float(1 + (scores > best).sum())  # ties with the best target do not count against it
        return State(x, p.predict(x), true[top : top + 1],
                     np.array([tid] if tid is not None else [], dtype=int), bool(is_target[top]), rank)

    def _stopped(self, p: PreparedTrial, run, state: State) -> bool:
        pred = p.predict(state.target_inputs, run.final)
        if self.params.stop == "all_correct":
            return bool((pred == state.target_true).all())
        return not bool((pred == state.target_pred).any())

    def evaluate(self, p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
        prm = self.params
        n = len(p.train.labels)
        labels = p.train.labels.numpy()
        budget = int(np.floor(prm.max_removal_fraction * n))
        removed = np.zeros(n, dtype=bool)
        rule = self.rule
        zeta = vars(rule.config).get("zeta")
        run, iterations, retrains, review = p.run, 0, 0, False

        def can_anneal() -> bool:
            return zeta is not None and prm.anneal < 1 and zeta * prm.anneal >= prm.min_zeta

        while not self._stopped(p, run, state):
            if iterations >= prm.max_rounds:
                review = True
                break
            iterations += 1
            keep = np.flatnonzero(~removed)
            # before any removal the training set is the trial's own tensors (not a copy), so the
            # first round of every method of a trial shares one engine pass (the trial's memo)
            ev = make_evidence(p, method.requires, rng, state.target_inputs, state.target_pred,
                               train_subset=keep if removed.any() else None, run=run)
            v = np.asarray(method.score(ev), dtype=np.float64).reshape(len(keep), -1).mean(axis=1)
            sigma = anomaly_scores(v, labels[keep], int(state.target_pred[0]), per_class=prm.per_class_stats)
            new = keep[rule.select(sigma, rng)]
            if len(new) == 0:
                if can_anneal():
                    zeta *= prm.anneal
                    rule = rule.with_params(zeta=zeta)
                    continue
                review = True  # nothing left above the cutoff: hand over to a human
                break
            if removed.sum() + len(new) > budget:
                review = True  # maximum sanitization reached (Sec. 5.3)
                break
            removed[new] = True
            retrains += 1
            run = retrain(p, ~removed, "retrain", retrains)
            if prm.anneal_rule == "every_round" and can_anneal():
                zeta *= prm.anneal
                rule = rule.with_params(zeta=zeta)
        metrics = self._outcome(p, run, removed, state, prefix="")
        metrics["retrain_rounds"] = float(retrains)
        extra = {"human_review": review, "final_zeta": zeta, "iterations": iterations,
                 "n_removed": int(removed.sum()), "target_ids": state.target_ids.tolist(),
                 "identified_correctly": state.identified_correctly, "target_rank": state.target_rank}
        if self.control is not None and removed.any():
            mask = self.control.select(np.zeros(n), rng, budget=int(removed.sum()))
            control_run = retrain(p, ~mask, "retrain", retrains)
            metrics.update(self._outcome(p, control_run, mask, state, prefix="control_"))
        return MethodResult(metrics=metrics, scores=removed.astype(np.float64), granted=sorted(method.requires),
                            extra=extra)

    def _outcome(self, p: PreparedTrial, run, removed: np.ndarray, state: State, prefix: str) -> dict[str, float]:
        pct_adv, pct_cl = removal_percentages(removed, p.is_adv)
        acc_before = p.trial_metrics["clean_accuracy"]
        acc_after = accuracy(p.predict(p.test.inputs, run.final).numpy(), p.test.labels.numpy())
        asr_target = attack_success_rate(p.predict(state.target_inputs, run.final).numpy(),
                                         state.target_pred.numpy())
        hits, eligible = p.attack_success(run.final)
        out = {"attack_success_rate": asr_target, "asr_all_targets": hits / eligible if eligible else float("nan"),
               "clean_accuracy": acc_after, "clean_accuracy_change": acc_after - acc_before,
               "pct_adv_removed": pct_adv, "pct_clean_removed": pct_cl}
        return {prefix + k: v for k, v in out.items()}
