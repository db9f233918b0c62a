"""Influence functions at the final parameters theta_T (paper 000 Sec. 3.2, Eqs. 1 and 9).

=====================  ===========================================  ===========================
registered name        estimator                                    tile
=====================  ===========================================  ===========================
``if``                 influence functions, Eq. 1                   dot, P = (H + damping I)^-1
``if-renorm``          renormalized influence functions, Eq. 9      train-side cosine, same P
``if-l``               layerwise renormalized IF (ours, Sec. 4.4)   per-tensor train-side cosine
=====================  ===========================================  ===========================

``(1/n) g_te^T (H + damping I)^-1 g_i`` over the parameters selected by ``layers``, H the Hessian
of the mean training loss over those parameters (no weight decay, eval mode).  Eq. 1 is over all
of theta: ``layers`` has no default, so every experiment names its scope explicitly -- ``"all"``
(the whole model, where the solver can afford it) or a list of parameter / module names (e.g.
``["classifier"]``, the final linear layer's weight and bias), whose source the suite records.
Positive = removing ``z_i`` would raise the query's loss, i.e. ``z_i`` supports the prediction
(the reference code ranks by ``-inf / n``, the same value).

Solvers and their effective damping:

* ``exact``: explicit Hessian, eigendecomposition, float64: ``(H + damping I)^-1``;
* ``cg``: batched conjugate gradient with full-data HVPs, converging to ``(H + damping I)^-1``;
* ``lissa``: the reference recursion ``h <- v + (1 - lissa_damp) h - H h / lissa_scale``, whose
  fixed point (after dividing by ``lissa_scale``) is ``(H + lissa_damp * lissa_scale I)^-1``:
  with the reference code's fig01 values (damp 1e-2, scale 3e7) the effective damping is 3e5,
  which swamps H for most models (LiSSA then ranks like a gradient dot product).  Its other
  settings are also the reference code's fig01 values (depth 1000, repeats 10, HVP batch 1).

Eq. 9 divides by ``||g_i||`` over the same parameter subset (the reference code's IF uses every
parameter, so there the two coincide); ``if-l`` divides each parameter tensor's block by that
block's norm (the reference code computes this layer norm but does not use it).

Shared passes: given the trial's memo (``evidence.extras["influence_memo"]``) and the exact
solver, the three variants of a trial with the same scope and settings share the damped
inverse Hessian and one engine pass computing all three reductions
(:func:`~defenses.influence.engine.score_matrices`), bit-identical to the memo-less path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch

from benchmark.api import Defense, Evidence
from benchmark.config import ConfigError
from benchmark.registry import defenses
from defenses.influence.engine import (
    EngineOptions,
    Preconditioner,
    WeightedCheckpoint,
    resolve_params,
    score_matrices,
    score_matrix,
)
from defenses.influence.hessian import SubsetObjective, solver_preconditioner

SOLVERS = ("exact", "cg", "lissa")

#: The IF family's reductions: one shared pass computes all three (:meth:`InfluenceFunctions.score`).
FAMILY_REDUCTIONS = ("dot", "train_cosine", "layerwise_train_cosine")

#: Largest total size of the extra score matrices a shared pass keeps in the trial's memo (ours).
MEMO_EXTRA_BYTES = 1 << 30


@dataclass
class IFConfig:
    layers: str | Sequence[str]  # required: "all" (Eq. 1) or parameter / module names
    solver: str = "exact"  # ours (Eq. 1 does not fix a solver)
    damping: float = 0.01  # exact / cg: effective damping, H + damping I (reference code's damp)
    cg_max_iter: int = 100  # ours
    cg_tol: float = 1e-10  # ours: relative residual
    lissa_damp: float = 0.01  # reference-code fig01; effective damping lissa_damp * lissa_scale
    lissa_scale: float = 3e7  # reference-code fig01 (model-specific)
    lissa_depth: int = 1000  # reference-code fig01
    lissa_repeats: int = 10  # reference-code fig01
    lissa_batch_size: int | None = 1  # reference-code HVP_BATCH_SIZE; None = full batch (exact)
    hessian_batch_size: int = 256  # ours
    solver_dtype: str = "float64"  # ours
    strategy: str = "auto"  # engine (ours)
    batch_size: int = 128  # ours

    def __post_init__(self) -> None:
        if isinstance(self.layers, str) and self.layers != "all":
            object.__setattr__(self, "layers", (self.layers,))
        if not isinstance(self.layers, str) and (not self.layers or not all(isinstance(x, str) for x in self.layers)):
            raise ConfigError(f"layers must be 'all' or a non-empty list of parameter / module names, "
                              f"got {self.layers!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.damping < 0 or self.lissa_damp < 0:
            raise ValueError("damping must be >= 0")
        if self.solver_dtype not in ("float32", "float64"):
            raise ValueError("solver_dtype must be 'float32' or 'float64'")
        if self.lissa_scale <= 0 or self.lissa_depth < 1 or self.lissa_repeats < 1:
            raise ValueError("lissa_scale must be > 0, lissa_depth and lissa_repeats >= 1")


def build_preconditioner(model: torch.nn.Module, names: Sequence[str], x: torch.Tensor, y: torch.Tensor,
                         cfg: IFConfig, generator: torch.Generator | None = None) -> Preconditioner:
    """The damped inverse Hessian of paper 000 Eq. 1 over ``names``, for ``cfg.solver``."""
    dtype = torch.float64 if cfg.solver_dtype == "float64" else torch.float32
    obj = SubsetObjective(model, names, x, y, batch_size=cfg.hessian_batch_size, dtype=dtype)
    return solver_preconditioner(obj, names, cfg.solver, cfg.damping, cg_max_iter=cfg.cg_max_iter,
                                 cg_tol=cfg.cg_tol, lissa_step_damp=cfg.lissa_damp, lissa_scale=cfg.lissa_scale,
                                 lissa_depth=cfg.lissa_depth, lissa_repeats=cfg.lissa_repeats,
                                 lissa_batch_size=cfg.lissa_batch_size, generator=generator)


@defenses.register("if", "Influence functions (paper 000 Eq. 1): (1/n) g_te^T (H + damping I)^-1 g_i "
                         "over a named parameter scope")
class InfluenceFunctions(Defense):
    """Influence functions (paper 000 Eq. 1)."""

    Config = IFConfig
    requires = frozenset({"model", "queries"})
    reduction: ClassVar[str] = "dot"

    def score(self, evidence: Evidence) -> np.ndarray:
        c = self.config
        qx, qy = evidence.queries()
        x, y = evidence.train_inputs, evidence.train_labels
        model = evidence.model()
        names = resolve_params(model, None if c.layers == "all" else list(c.layers))
        gen = torch.Generator().manual_seed(int(evidence.rng.integers(2**62)))
        pre = self._preconditioner(evidence, model, names, gen)
        ck = WeightedCheckpoint(evidence.final_params, 1.0 / len(y))
        opts = EngineOptions(batch_size=c.batch_size, strategy=c.strategy, skip_zero_query=False)
        memo = evidence.extras.get("influence_memo")
        if memo is not None and c.solver == "exact":
            return self._shared(evidence, memo, ck, names, pre, opts).numpy().copy()
        s = score_matrix(evidence.model_factory, [ck], x, y, qx, qy, reduction=self.reduction,
                         layers=names, preconditioner=pre, options=opts)
        return s.numpy()

    def _shared(self, evidence: Evidence, memo: dict, ck: WeightedCheckpoint, names: list[str],
                pre: Preconditioner, opts: EngineOptions) -> torch.Tensor:
        """This method's scores from the trial's shared pass: the first IF variant of a trial
        with the same (shared, exact) preconditioner, scope and engine settings computes all
        three reductions in one pass -- they combine the same per-layer Grams and training
        norms against the same preconditioned queries, so the two extra ones cost next to
        nothing -- and the others read theirs from the memo (which keeps the keyed objects
        alive, so their ids are not reused).  Bit-identical to the memo-less path."""
        x, y = evidence.train_inputs, evidence.train_labels
        qx, qy = evidence.queries()
        key = ("if-family-pass", id(pre), id(evidence.model_factory), id(evidence.final_params), id(x),
               id(y), id(qx), id(qy), tuple(names), repr(opts))
        if key not in memo:
            memo[key] = ({}, (pre, evidence.model_factory, evidence.final_params, x, y, qx, qy))
        done: dict = memo[key][0]
        if self.reduction not in done:
            todo = [self.reduction]
            if len(y) * len(qy) * 8 * len(FAMILY_REDUCTIONS) <= MEMO_EXTRA_BYTES:
                todo += [r for r in FAMILY_REDUCTIONS if r != self.reduction and r not in done]
            got = score_matrices(evidence.model_factory, [ck], x, y, qx, qy, terms=[(r, True) for r in todo],
                                 layers=names, preconditioner=pre, options=opts)
            done.update({r: got[(r, True)] for r in todo})
        return done[self.reduction]

    def _preconditioner(self, evidence: Evidence, model: torch.nn.Module, names: list[str],
                        gen: torch.Generator) -> Preconditioner:
        """The damped inverse Hessian; the exact one is deterministic, so it is shared through
        the trial's memo by every IF variant of a trial with the same scope and settings (the
        memo keeps the keyed objects alive, so their ids are not reused while it lives)."""
        c = self.config
        memo = evidence.extras.get("influence_memo")
        if c.solver != "exact" or memo is None:
            return build_preconditioner(model, names, evidence.train_inputs, evidence.train_labels, c, gen)
        key = ("if-exact-preconditioner", id(evidence.final_params), id(evidence.train_inputs),
               id(evidence.train_labels), tuple(names), c.damping, c.hessian_batch_size, c.solver_dtype)
        if key not in memo:
            pre = build_preconditioner(model, names, evidence.train_inputs, evidence.train_labels, c, gen)
            memo[key] = (pre, (evidence.final_params, evidence.train_inputs, evidence.train_labels))
        return memo[key][0]


@defenses.register("if-renorm", "Renormalized influence functions (paper 000 Eq. 9): g_i / ||g_i||")
class InfluenceFunctionsRenorm(InfluenceFunctions):
    """Renormalized influence functions (paper 000 Eq. 9): g_i / ||g_i||."""

    reduction = "train_cosine"


@defenses.register("if-l", "Layerwise renormalized influence functions (paper 000 Eq. 9 per parameter tensor)")
class InfluenceFunctionsL(InfluenceFunctions):
    """Layerwise renormalized influence functions: each parameter tensor's block normalised."""

    reduction = "layerwise_train_cosine"


__all__ = ["IFConfig", "InfluenceFunctions", "InfluenceFunctionsL", "InfluenceFunctionsRenorm",
           "build_preconditioner"]
