"""The TracIn family: dynamic influence estimators (paper 000 Secs. 3.2, 4.3, 4.4), all as tiles
of the engine.

=====================  ===========================================  ==========================
registered name        estimator                                    tile
=====================  ===========================================  ==========================
``tracin``             TracIn, Eq. 4                                dot, interval multiplicity
``tracin-renorm``      renormalized TracIn, Eq. 11                  cosine, interval mult.
``tracin-l``           layerwise renormalized TracIn, Sec. 4.4      layerwise cosine, mult.
``tracincp``           TracInCP, Eq. 5                              dot
``gas``                GAS = renormalized TracInCP, Eq. 12, Alg. 1  cosine
``gas-l``              layerwise GAS, Sec. 4.4                      layerwise cosine
=====================  ===========================================  ==========================

Checkpoint ``k`` of a :class:`~benchmark.training.trainer.TrainingRun` holds theta at the start
of its interval, the learning rate eta of the interval's first update and the ids of the
examples in the interval's batches.  Eq. 4's sum over iterations ``t`` with ``z_i in B_t`` is
approximated, as in Pruthi et al. and the reference code, by crediting example ``i`` at
checkpoint ``k`` once per occurrence in that interval's batches (no off-by-one: the last
interval is credited once, unlike the reference code, original_code.md Sec. 1 item 5).

Conventions (engine module docstring): per-example loss gradients without weight decay
(``weight_decay_in_gradient`` adds the reference GAS loop's ``wd * sum ||p||^2`` term), eval
mode, the query uses the final model's predicted label (the protocol supplies it), checkpoint
weight ``eta / b`` (``weighting``), a checkpoint is skipped for a query whose gradient is zero,
norms clamped at 1e-8, a layer of GAS-L is one parameter tensor and GAS-L sums the per-layer
cosines.

Shared passes: given the trial's memo (``evidence.extras["influence_memo"]``), the methods of a
trial with the same settings (all but the reduction and the multiplicity) share one engine
pass (:func:`~defenses.influence.engine.score_matrices`): the first computes the terms of its
kind (and those of the trial's hint ``evidence.extras["influence_terms"]``), the others read
theirs, bit-identical to the memo-less path (:meth:`DynamicInfluence._terms_to_compute`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch

from benchmark.api import Defense, Evidence
from benchmark.api.evidence import TRIAL_METHODS
from benchmark.registry import defenses
from defenses.influence.engine import (
    MIN_NORM,
    EngineOptions,
    GradientMap,
    Term,
    WeightedCheckpoint,
    score_matrices,
    score_matrix,
)

#: The TracIn family's reductions: one shared pass computes the terms ``(reduction, per_interval)``
#: of several of its methods (:meth:`DynamicInfluence.score`).
FAMILY_REDUCTIONS = ("dot", "cosine", "layerwise_cosine")

#: Largest total size of the extra (not yet asked for) score matrices a shared pass computes
#: and keeps in the trial's memo (ours): above it, e.g. FIT's training x training-sized
#: matrices, a method computes only its own term unless the trial's hint names more.
MEMO_EXTRA_BYTES = 1 << 30

#: checkpoint weighting -> function (lr, batch_size) -> weight
WEIGHTINGS = {
    "lr_over_b": lambda lr, b: lr / b,  # paper 000 Eqs. 4, 5, 11, 12 (eta_t / b)
    "lr": lambda lr, b: lr,  # Pruthi et al.'s TracInCP without the batch-size factor
    "uniform": lambda lr, b: 1.0,  # every checkpoint counts the same
}


@dataclass
class DynamicConfig:
    weighting: str = "lr_over_b"  # paper 000 Eq. 4/5/11/12
    weight_decay_in_gradient: float = 0.0  # 0: paper 000 Sec. 2; >0: reference GAS loop's term
    layers: Sequence[str] | None = None  # parameter / module names; None = all (paper 000)
    strategy: str = "auto"  # engine per-layer choice: "auto" | "kernel" | "materialise" (ours)
    batch_size: int = 128  # training examples per batched pass (ours)
    min_norm: float = MIN_NORM  # reference-code MIN_NORM
    skip_zero_query: bool = True  # reference code
    checkpoint_stride: int = 1  # use every k-th checkpoint (paper 000 Sec. 5 "faster FIT"); ours

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {self.weighting!r}")
        if self.checkpoint_stride < 1:
            raise ValueError("checkpoint_stride must be >= 1")
        if self.weight_decay_in_gradient < 0:
            raise ValueError("weight_decay_in_gradient must be >= 0")


def weighted_checkpoints(run, n_train: int, weighting: str = "lr_over_b", per_interval: bool = False,
                         stride: int = 1) -> list[WeightedCheckpoint]:
    """The checkpoint terms of a training run: weight ``eta/b`` (or another ``weighting``) and,
    for TracIn, each example's number of occurrences in the interval's batches."""
    fn = WEIGHTINGS[weighting]
    out = []
    for ck in run.checkpoints[::stride]:
        mult = None
        if per_interval:
            ids = ck.example_ids.long()
            if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= n_train):
                raise ValueError(f"checkpoint at iteration {ck.iteration} credits example ids outside "
                                 f"[0, {n_train}); the training run does not match the training set")
            mult = torch.bincount(ids, minlength=n_train)
        out.append(WeightedCheckpoint(ck.params, float(fn(ck.lr, ck.batch_size)), mult))
    return out


class DynamicInfluence(Defense):
    """Base of the TracIn family: one engine tile over the recorded checkpoints (a term of the
    trial's shared pass when the trial has a memo)."""

    Config = DynamicConfig
    requires = frozenset({"checkpoints", "queries"})
    reduction: ClassVar[str] = "dot"
    per_interval: ClassVar[bool] = False

    def engine_options(self) -> EngineOptions:
        c = self.config
        return EngineOptions(batch_size=c.batch_size, strategy=c.strategy, min_norm=c.min_norm,
                             skip_zero_query=c.skip_zero_query)

    def score(self, evidence: Evidence) -> np.ndarray:
        c = self.config
        qx, qy = evidence.queries()
        run = evidence.run()
        x, y = evidence.train_inputs, evidence.train_labels
        if run.n_train != len(y):
            raise ValueError(f"the training run saw {run.n_train} examples but evidence holds {len(y)}")
        memo = evidence.extras.get("influence_memo")
        if memo is not None:
            return self._shared(evidence, memo).numpy().copy()
        cks = weighted_checkpoints(run, len(y), c.weighting, self.per_interval, c.checkpoint_stride)
        gmap = GradientMap("loss", param_l2=c.weight_decay_in_gradient)
        s = score_matrix(evidence.model_factory, cks, x, y, qx, qy, reduction=self.reduction,
                         train_map=gmap, query_map=gmap, layers=c.layers, options=self.engine_options())
        return s.numpy()

    def term(self) -> Term:
        """This method's term of a shared pass: ``(reduction, per_interval)``."""
        return (self.reduction, self.per_interval)

    def _shared(self, evidence: Evidence, memo: dict) -> torch.Tensor:
        """This method's scores from the trial's shared pass (:func:`score_matrices`): the first
        TracIn-family method of a trial with given settings computes, in one pass over the
        checkpoints, the terms of every method expected to follow (:meth:`_terms_to_compute`);
        the others read theirs from the memo.  Keyed by every setting but the reduction and the
        multiplicity, and by the identities of the run, model factory, training and query
        tensors, which the memo keeps alive so that their ids are not reused while it lives.
        Every term is bit-identical to the memo-less path (see :func:`score_matrices`)."""
        c = self.config
        run, x, y = evidence.run(), evidence.train_inputs, evidence.train_labels
        qx, qy = evidence.queries()
        opts = self.engine_options()
        layers = c.layers if c.layers is None or isinstance(c.layers, str) else tuple(c.layers)
        key = ("tracin-family-pass", id(run), id(evidence.model_factory), id(x), id(y), id(qx), id(qy),
               c.weighting, c.weight_decay_in_gradient, layers, c.checkpoint_stride, repr(opts))
        if key not in memo:
            memo[key] = ({}, (run, evidence.model_factory, x, y, qx, qy))
        done: dict = memo[key][0]
        if self.term() not in done:
            todo = [t for t in self._terms_to_compute(evidence, len(y), len(qy)) if t not in done]
            per_interval = any(pi for _, pi in todo)
            cks = weighted_checkpoints(run, len(y), c.weighting, per_interval, c.checkpoint_stride)
            gmap = GradientMap("loss", param_l2=c.weight_decay_in_gradient)
            done.update(score_matrices(evidence.model_factory, cks, x, y, qx, qy, terms=todo,
                                       train_map=gmap, query_map=gmap, layers=c.layers, options=opts))
        return done[self.term()]

    def _terms_to_compute(self, evidence: Evidence, n: int, m: int) -> list[Term]:
        """The terms the first call of a shared pass computes: this method's, plus those of the
        hint ``evidence.extras["influence_terms"]`` (the ``(reduction, per_interval)`` terms the
        trial's TracIn-family methods will need) or, without it, the terms of the TracIn-family
        methods of equal settings among ``evidence.extras["trial_methods"]`` (the methods the
        harness runs on this trial) when the trial gives them, else the other two
        reductions of this method's kind (same ``per_interval``).

        Measured (CPU time, one thread; ``small-cnn`` of width 8 on 320 8x8 digits, 10 classes,
        10 checkpoints of 2 epochs, 1 query; best of 15 alternating rounds): the three terms of
        one kind cost 0-5 % more than GAS alone (they combine the same per-layer Grams and
        norms), so they are always computed.  All six cost 24 % more than GAS alone (over the
        15 % threshold): the interval kind's rows -- the credited rows of each interval, here
        1/5 of them -- are batched apart so that its scores stay bit-identical to the memo-less
        path, which costs a second set of batches (plus the fixed per-checkpoint work) whether
        it runs now or later.  So without a hint the other kind waits for its first method
        (TracIn alone costs 0.37-0.40 x GAS there, so a trial with both kinds pays ~1.4 x GAS
        instead of 1.24 x with the hint).  A memory cap (:data:`MEMO_EXTRA_BYTES`) keeps very
        large matrices (e.g. FIT's candidates x training set) to the asked-for terms."""
        own = self.term()
        hint = evidence.extras.get("influence_terms")
        siblings = evidence.extras.get(TRIAL_METHODS)
        if hint is None and siblings:  # the trial's other methods (or their estimators, e.g. FIT's)
            inner = [getattr(m, "estimator", m) for m in siblings]
            hint = [m.term() for m in inner if isinstance(m, DynamicInfluence) and m.config == self.config] or None
        if hint is not None:
            want = [(str(r), bool(p)) for r, p in hint if r in FAMILY_REDUCTIONS]
        else:
            want = [(r, self.per_interval) for r in FAMILY_REDUCTIONS]
            if n * m * 8 * len(want) > MEMO_EXTRA_BYTES:
                want = []
        return [own] + [t for t in dict.fromkeys(want) if t != own]


@defenses.register("tracin", "TracIn (paper 000 Eq. 4): (eta/b) <g_i, g_te> at the intervals whose batches held z_i")
class TracIn(DynamicInfluence):
    """TracIn (paper 000 Eq. 4): sum over intervals containing z_i of (eta/b) <g_i, g_te>."""

    per_interval = True


@defenses.register("tracin-renorm", "Renormalized TracIn (paper 000 Eq. 11): Eq. 4 with gradient cosines")
class TracInRenorm(DynamicInfluence):
    """Renormalized TracIn (paper 000 Eq. 11): Eq. 4 with cosines."""

    reduction = "cosine"
    per_interval = True


@defenses.register("tracin-l", "Layerwise renormalized TracIn (paper 000 Sec. 4.4): per-tensor cosines, summed")
class TracInL(DynamicInfluence):
    """Layerwise renormalized TracIn (paper 000 Sec. 4.4): per-tensor cosines, summed."""

    reduction = "layerwise_cosine"
    per_interval = True


@defenses.register("tracincp", "TracInCP (paper 000 Eq. 5): sum over checkpoints of (eta/b) <g_i, g_te>")
class TracInCP(DynamicInfluence):
    """TracInCP (paper 000 Eq. 5): sum over all checkpoints of (eta/b) <g_i, g_te>."""


@defenses.register("gas", "GAS = renormalized TracInCP (paper 000 Eq. 12, Alg. 1): sum of (eta/b) cos(g_i, g_te)")
class GAS(DynamicInfluence):
    """GAS = renormalized TracInCP (paper 000 Eq. 12, Alg. 1)."""

    reduction = "cosine"


@defenses.register("gas-l", "GAS-L (paper 000 Sec. 4.4): GAS with per-parameter-tensor cosines, summed")
class GASL(DynamicInfluence):
    """GAS-L (paper 000 Sec. 4.4): sum over checkpoints and parameter tensors of (eta/b) cos."""

    reduction = "layerwise_cosine"
