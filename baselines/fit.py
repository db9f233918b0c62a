"""FIT: framework for identifying targets of training-set attacks (paper 000 Sec. 5, Alg. 2,
suppl. Alg. 6).

For every candidate (query) ``j`` of the analysis set, with influence vector ``v`` over the
training set (one column of any registered per-query influence defense, e.g. ``gas``):

1. anomaly scores ``sigma = (v - median) / Q_n`` (Sec. 5.2); median and Q_n (Eq. 13) are taken
   over the training examples labelled with the candidate's *predicted* label when
   ``per_class_stats`` (Sec. 5.2 "Multiclass vs. Binary" (1); reference code), else over all;
2. upper-tail heaviness = the ``kappa``-th largest ``sigma`` over *all* training examples
   (Sec. 5.2; reference code takes the tail point from the full sorted vector);
3. candidates are ranked by tail heaviness (heavier = more likely a target).

Optionally (``rank_within_class``) a candidate's tail heaviness is replaced by its robust
z-score -- (t - median) / Q_n over the candidates sharing its predicted label -- which is our
reading of Sec. 5.2 (2) "ranked w.r.t. other test instances labeled y_hat"; the reference code
does this in post-processing that was not found, so the default is the plain global ranking.

"Faster FIT" (Sec. 5.2; reference code, NLP): phase 1 computes influence with only the final
parameters (a training-run view with one checkpoint: theta_T, lr 1, batch size 1, all training
ids) and ``phase1_kappa`` (reference code: 1); phase 2 recomputes the top ``phase2_fraction`` of
candidates (paper: "e.g., 10%") with all checkpoints and ``kappa``.  Phase-2 candidates always
rank above the others, which keep their phase-1 order.

Degenerate scale: when Q_n = 0 (more than half of the group's pairwise distances are zero, or a
single example), ``sigma`` is +inf above the median, -inf below it and 0 at it (ours; the
reference code would divide by zero; :mod:`benchmark.anomaly`).  FIT's scores must be finite for
the harness's metrics, so when any tail heaviness is infinite the candidates are ranked
lexicographically -- +inf first, -inf last -- with ties broken by the finite secondary key
``kappa-th largest v - median`` (the unscaled tail excess), and the scores become those ranks
(ours; the order of finite tails is unchanged).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from benchmark.anomaly import as_float_vector, as_int_vector, robust_center_scale, standardize, stats_mask
from benchmark.api import Evidence, TargetRanker
from benchmark.config import ConfigError
from benchmark.registry import defenses, target_rankers
from benchmark.robust_scale import FINITE_CORRECTIONS, qn_scale
from benchmark.training.trainer import Checkpoint, TrainingRun


def tail_heaviness(sigma: Any, kappa: int) -> float:
    """Upper-tail heaviness: the ``kappa``-th largest anomaly score (paper 000 Sec. 5.2)."""
    sigma = np.asarray(sigma, dtype=np.float64).ravel()
    _check_kappa(kappa, len(sigma))
    return float(np.partition(sigma, len(sigma) - kappa)[len(sigma) - kappa])


def tail_heaviness_matrix(influence: Any, train_labels: Any, predicted_labels: Any, kappa: int,
                          per_class: bool = True, finite_corr: str = "none",
                          return_excess: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Tail heaviness of every column of an ``(n_train, n_queries)`` influence matrix.

    Equal to ``tail_heaviness(anomaly_scores(V[:, j], ...), kappa)`` for each ``j``, computed
    once per predicted class (sigma is monotone in v, so the kappa-th largest sigma is the
    standardized kappa-th largest v).  ``return_excess`` also returns the finite unscaled
    excess ``kappa-th largest v - median`` of every column (the tie-breaking key when Q_n = 0).
    """
    V = np.asarray(influence, dtype=np.float64)
    labels = as_int_vector(train_labels, "train_labels")
    preds = as_int_vector(predicted_labels, "predicted_labels")
    if V.ndim != 2 or V.shape != (len(labels), len(preds)):
        raise ValueError(f"influence matrix has shape {V.shape}; expected (n_train, n_queries) = "
                         f"({len(labels)}, {len(preds)})")
    if np.isnan(V).any():
        raise ValueError("the influence matrix contains NaN; check the influence estimator")
    n = len(labels)
    _check_kappa(kappa, n)
    kth_largest = np.partition(V, n - kappa, axis=0)[n - kappa]
    tails = np.empty(len(preds))
    excess = np.empty(len(preds))
    for c in np.unique(preds):
        cols = np.flatnonzero(preds == c)
        rows = stats_mask(labels, int(c), per_class)
        group = V[rows][:, cols]
        centers = np.median(group, axis=0)
        scales = np.array([qn_scale(group[:, i], finite_corr=finite_corr) for i in range(len(cols))])
        tails[cols] = standardize(kth_largest[cols], centers, scales)
        excess[cols] = kth_largest[cols] - centers
    return (tails, excess) if return_excess else tails


def lexicographic_scores(*keys: np.ndarray) -> np.ndarray:
    """Finite scores ordering items by ``keys`` lexicographically (first key most significant;
    each key may hold +-inf); items with equal keys get equal scores (1 = lowest)."""
    if not keys:
        raise ValueError("need at least one key")
    stacked = np.stack([np.asarray(k, dtype=np.float64) for k in keys])
    order = np.lexsort(stacked[::-1])  # np.lexsort sorts by the last key first
    ordered = stacked[:, order]
    new_group = np.r_[True, np.any(ordered[:, 1:] != ordered[:, :-1], axis=0)]
    out = np.empty(stacked.shape[1])
    out[order] = np.cumsum(new_group).astype(np.float64)
    return out


def rank_within_classes(scores: np.ndarray, predicted_labels: Any,
                        finite_corr: str = "none") -> np.ndarray:
    """Robust z-score of each candidate's score among candidates with the same predicted label
    (ours: our reading of paper 000 Sec. 5.2 (2)).  Non-finite scores are left unchanged."""
    scores = np.asarray(scores, dtype=np.float64)
    preds = as_int_vector(predicted_labels, "predicted_labels")
    out = scores.copy()
    for c in np.unique(preds):
        idx = np.flatnonzero(preds == c)
        fin = idx[np.isfinite(scores[idx])]
        if fin.size == 0:
            continue
        center, scale = robust_center_scale(scores[fin], finite_corr)
        out[fin] = standardize(scores[fin], center, scale)
    return out


def final_checkpoint_view(run: TrainingRun) -> TrainingRun:
    """The training run as phase 1 of faster FIT sees it: one checkpoint holding theta_T with
    lr 1 and batch size 1 (reference code: lr = 1, first history entry only), crediting every
    training example once."""
    ckpt = Checkpoint(iteration=run.total_iterations, params=run.final, lr=1.0, batch_size=1,
                      example_ids=torch.arange(run.n_train, dtype=torch.long))
    return dataclasses.replace(run, checkpoints=[ckpt])


# -- the ranker -------------------------------------------------------------------------------

@dataclass
class FITConfig:
    estimator: str = "gas"  # paper 000 Sec. 5.1: GAS(-L); any registered per-query defense
    estimator_params: dict[str, Any] = field(default_factory=dict)
    kappa: int = 10  # reference-code (ANOM_CUTOFF); paper 000 Sec. 6.3: stable for kappa in [1, 25]
    per_class_stats: bool = True  # paper 000 Sec. 5.2 "Multiclass vs. Binary" (1); reference-code
    rank_within_class: bool = False  # paper 000 Sec. 5.2 (2); ours: off (not in reference code)
    two_phase: bool = False  # paper 000 Sec. 5.2 "Faster FIT"
    phase1_kappa: int = 1  # reference-code (FIRST_PASS_ANON_CUTOFF)
    phase1_checkpoints: str = "final"  # paper 000 Sec. 5.2: T = {T}; "all" uses every checkpoint
    phase2_fraction: float = 0.1  # paper 000 Sec. 5.2 ("e.g., 10%")
    qn_finite_corr: str = "none"  # reference-code (statsmodels qn_scale: no correction)

    def __post_init__(self) -> None:
        if self.kappa < 1 or self.phase1_kappa < 1:
            raise ConfigError(f"kappa and phase1_kappa must be >= 1, got {self.kappa}, "
                              f"{self.phase1_kappa}")
        if self.phase1_checkpoints not in ("final", "all"):
            raise ConfigError(f"phase1_checkpoints must be 'final' or 'all', got "
                              f"{self.phase1_checkpoints!r}")
        if not 0.0 < self.phase2_fraction <= 1.0:
            raise ConfigError(f"phase2_fraction must be in (0, 1], got {self.phase2_fraction}")
        if self.qn_finite_corr not in FINITE_CORRECTIONS:
            raise ConfigError(f"qn_finite_corr must be one of {FINITE_CORRECTIONS}, got "
                              f"{self.qn_finite_corr!r}")
        if not isinstance(self.estimator_params, dict):
            raise ConfigError("estimator_params must be a dict of the estimator's parameters")


@target_rankers.register(
    "fit", "FIT (paper 000 Alg. 2): rank candidates by the kappa-th largest robust anomaly score "
           "(median / Q_n) of their influence vector; estimator is a parameter")
class FIT(TargetRanker):
    """FIT target identification (paper 000 Alg. 2 / suppl. Alg. 6) over any registered
    per-query influence defense."""

    Config = FITConfig
    requires = frozenset({"checkpoints", "queries"})  # per instance: the estimator's + queries

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        cfg = self.config
        estimator_cls = defenses.get(cfg.estimator)
        self.estimator = estimator_cls(**cfg.estimator_params)
        if not self.estimator.per_query:
            raise ConfigError(f"FIT needs a per-query influence estimator (one that requires "
                              f"'queries'); defense {cfg.estimator!r} scores the training set "
                              "without queries")
        self.requires = frozenset(self.estimator.requires) | {"queries"}
        if cfg.two_phase and "checkpoints" not in self.requires:
            raise ConfigError(f"two_phase FIT recomputes influence on a final-checkpoint view of "
                              f"the training run, but {cfg.estimator!r} does not use checkpoints; "
                              "set two_phase=False")
        self._check_requires()
        self.details: dict[str, Any] = {}

    # influence and tails for a subset of the candidates
    def _tails(self, evidence: Evidence, ids: np.ndarray, kappa: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tail heaviness, finite tail excess)`` of the candidates ``ids``."""
        qx, qy = evidence.queries()
        sub = evidence
        if len(ids) != len(qy) or not np.array_equal(ids, np.arange(len(qy))):
            sx, sy = self._subset_queries(evidence, ids)
            sub = dataclasses.replace(evidence, query_inputs=sx, query_labels=sy)
        V = self._influence(sub, ids)
        preds = as_int_vector(qy, "query_labels")[ids]
        tails, excess = tail_heaviness_matrix(V, evidence.train_labels, preds, kappa,
                                              self.config.per_class_stats, self.config.qn_finite_corr,
                                              return_excess=True)
        if self.config.rank_within_class:
            tails = rank_within_classes(tails, preds, self.config.qn_finite_corr)
        return tails, excess

    @staticmethod
    def _subset_queries(ev: Evidence, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidates ``ids`` as query tensors, one object per (queries, ids) in the trial's
        memo, so that every FIT variant's second phase hands the estimator the same tensors and
        the estimators share their engine pass (a pass is keyed by the query tensors)."""
        qx, qy = ev.queries()
        memo = ev.extras.get("influence_memo")
        key = ("fit-candidate-subset", id(qx), id(qy), ids.tobytes())
        if memo is not None and key in memo:
            return memo[key][0]
        sub = (_take(qx, ids), qy[torch.as_tensor(ids, dtype=torch.long)])
        if memo is not None:
            memo[key] = (sub, (qx, qy))
        return sub

    def _influence(self, ev: Evidence, ids: np.ndarray) -> np.ndarray:
        """The estimator's (n_train, n_ids) matrix, shared through the trial's memo (when the
        protocol provides one) by every FIT variant with the same estimator, so e.g. a kappa
        study does not recompute influence.  The memo keeps references to the keyed objects,
        so their ids cannot be reused while it lives."""
        memo = ev.extras.get("influence_memo")
        key = (self.config.estimator, json.dumps(self.config.estimator_params, sort_keys=True, default=str),
               id(ev.training_run), id(ev.train_inputs), id(ev.query_inputs), ids.tobytes())
        if memo is not None and key in memo:
            return memo[key][0]
        V = np.asarray(self.estimator.score(ev), dtype=np.float64)
        if memo is not None:
            memo[key] = (V, (ev.training_run, ev.train_inputs, ev.query_inputs))
        return V

    def rank(self, evidence: Evidence) -> np.ndarray:
        cfg = self.config
        n_q = len(evidence.queries()[1])
        every = np.arange(n_q)
        if not cfg.two_phase:
            tails, excess = self._tails(evidence, every, cfg.kappa)
            self.details = {"tail_heaviness": tails}
            return tails if np.all(np.isfinite(tails)) else lexicographic_scores(tails, excess)
        phase1_ev = evidence
        if cfg.phase1_checkpoints == "final":
            phase1_ev = dataclasses.replace(evidence, training_run=final_checkpoint_view(evidence.run()))
        s1, e1 = self._tails(phase1_ev, every, cfg.phase1_kappa)
        m = max(1, math.ceil(cfg.phase2_fraction * n_q - 1e-9))
        # phase-1 order: tail heaviness, then the finite excess; ties at the cut: lower index first
        top = np.sort(np.argsort(-lexicographic_scores(s1, e1), kind="stable")[:m])
        s2, e2 = self._tails(evidence, top, cfg.kappa)
        rest = np.setdiff1d(every, top)
        self.details = {"phase1_tail_heaviness": s1, "phase2_ids": top, "phase2_tail_heaviness": s2}
        if np.all(np.isfinite(s2)) and np.all(np.isfinite(s1[rest])):
            return _combine(s2, top, s1[rest], rest, n_q)
        in_top = np.isin(every, top)
        tails, excess = s1.copy(), e1.copy()
        tails[top], excess[top] = s2, e2
        return lexicographic_scores(in_top.astype(np.float64), tails, excess)


def _combine(s_top: np.ndarray, top: np.ndarray, s_rest: np.ndarray, rest: np.ndarray,
             n: int) -> np.ndarray:
    """Finite scores where every ``top`` candidate outranks every ``rest`` one, each group keeping
    its own order and ties; ``top`` keeps its values."""
    out = np.empty(n)
    out[top] = s_top
    if rest.size == 0:
        return out
    low = float(np.min(s_top))
    rest_rank = rankdata(s_rest, method="min")  # 1..|rest|, ties share a rank
    gap = max(1.0, abs(low))  # keeps every rest score strictly below `low` in float64
    out[rest] = low - gap * (1.0 + rest.size - rest_rank)
    return out


def _take(inputs: Any, ids: np.ndarray) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs[torch.as_tensor(ids, dtype=torch.long)]
    if isinstance(inputs, np.ndarray):
        return inputs[ids]
    return [inputs[int(i)] for i in ids]


def _check_kappa(kappa: int, n: int) -> None:
    if not 1 <= int(kappa) <= n:
        raise ValueError(f"kappa={kappa} must be between 1 and the number of training examples "
                         f"({n}); lower kappa")
