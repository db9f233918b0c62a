"""Static influence estimators at the final parameters theta_T (paper 000 Secs. 3.2, 4.3).

=====================  ===========================================  ===========================
registered name        estimator                                    tile
=====================  ===========================================  ===========================
``if``                 influence functions, Eq. 1                   dot, P = (H + damping I)^-1
``if-renorm``          renormalized influence functions, Eq. 9      train-side cosine, same P
``if-l``               layerwise renormalized IF (ours, Sec. 4.4)   per-tensor train-side cosine
``rp``                 representer point, Eq. 2                     dot of representer maps
``rp-renorm``          renormalized representer point, Eq. 10       same with sgn(alpha)
=====================  ===========================================  ===========================

Influence functions: ``(1/n) g_te^T (H + damping I)^-1 g_i`` over the parameters selected by
``layers`` (default: the final linear layer ``classifier``), H the Hessian of the mean training
loss (no weight decay, eval mode).  Positive = removing ``z_i`` would raise the query's loss,
i.e. ``z_i`` supports the prediction (the reference code ranks by ``-inf / n``, the same value).
Solvers: ``exact`` (explicit damped Hessian, eigendecomposition, float64), ``cg`` (batched
conjugate gradient with full-data HVPs) and ``lissa`` (the reference recursion; its settings are
the reference code's fig01 values, which are model-specific: damp 1e-2, scale 3e7, depth 1000,
repeats 10, HVP batch 1).  LiSSA's fixed point is ``(H + lissa_damp * lissa_scale I)^-1``.

Eq. 9 divides by ``||g_i||`` over the same parameter subset (the reference code's IF uses every
parameter, so there the two coincide); ``if-l`` divides each parameter tensor's block by that
block's norm (the reference code computes this layer norm but does not use it).

Representer point: ``-(1/(2 lambda n)) alpha_i <f_i, f_te>`` with ``f`` the penultimate features,
``alpha_i = dL(z_i)/da_{y_i}`` (``class_index="train_label"``, paper 000 Eq. 2; for a single-logit
binary model the derivative w.r.t. that logit, as the reference code) or the derivative w.r.t.
the query's predicted class's logit (``"query_label"``, Yeh et al.'s representer value; for a
single logit multiplied by +1/-1 for predicted class 1/0).  lambda is the training run's weight
decay (``evidence.train_config.weight_decay``) unless ``weight_decay`` is given; it only
scales the scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from defenses.base import Defense, Evidence
from defenses.influence.engine import (
    EngineOptions,
    FunctionPreconditioner,
    MatrixPreconditioner,
    Preconditioner,
    RepresentationMap,
    WeightedCheckpoint,
    resolve_params,
    score_matrix,
)
from defenses.influence.hessian import SubsetObjective, conjugate_gradient, damped_inverse, lissa

SOLVERS = ("exact", "cg", "lissa")


@dataclass
class IFConfig:
    solver: str = "exact"  # ours (Eq. 1 does not fix a solver)
    layers: Sequence[str] | None = ("classifier",)  # ours: final linear layer; None = all
    damping: float = 0.01  # exact / cg: H + damping I (value of the reference code's damp)
    cg_max_iter: int = 100  # ours
    cg_tol: float = 1e-10  # ours: relative residual
    lissa_damp: float = 0.01  # reference-code fig01
    lissa_scale: float = 3e7  # reference-code fig01 (model-specific)
    lissa_depth: int = 1000  # reference-code fig01
    lissa_repeats: int = 10  # reference-code fig01
    lissa_batch_size: int | None = 1  # reference-code HVP_BATCH_SIZE; None = full batch (exact)
    hessian_batch_size: int = 256  # ours
    solver_dtype: str = "float64"  # ours
    strategy: str = "auto"  # engine (ours)
    batch_size: int = 128  # ours

    def __post_init__(self) -> None:
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
    if cfg.solver == "exact":
        return MatrixPreconditioner(list(names), damped_inverse(obj.hessian(), cfg.damping))
    if cfg.solver == "cg":
        return FunctionPreconditioner(list(names), lambda q: conjugate_gradient(
            obj.hvp, q.to(dtype), cfg.damping, cfg.cg_max_iter, cfg.cg_tol))
    return FunctionPreconditioner(list(names), lambda q: lissa(
        obj.hvp, q.to(dtype), obj.n, cfg.lissa_damp, cfg.lissa_scale, cfg.lissa_depth,
        cfg.lissa_repeats, cfg.lissa_batch_size, generator))


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
        names = resolve_params(model, c.layers)
        gen = torch.Generator().manual_seed(int(evidence.rng.integers(2**62)))
        pre = build_preconditioner(model, names, x, y, c, gen)
        ck = WeightedCheckpoint(evidence.final_params, 1.0 / len(y))
        s = score_matrix(evidence.model_factory, [ck], x, y, qx, qy, reduction=self.reduction,
                         layers=names, preconditioner=pre,
                         options=EngineOptions(batch_size=c.batch_size, strategy=c.strategy,
                                               skip_zero_query=False))
        return s.numpy()


class InfluenceFunctionsRenorm(InfluenceFunctions):
    """Renormalized influence functions (paper 000 Eq. 9): g_i / ||g_i||."""

    reduction = "train_cosine"


class InfluenceFunctionsL(InfluenceFunctions):
    """Layerwise renormalized influence functions: each parameter tensor's block normalised."""

    reduction = "layerwise_train_cosine"


# ------------------------------------------------------------------------------------------
# Representer point
# ------------------------------------------------------------------------------------------
def _alpha(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``dL/da`` for every output ``(B, C)`` (BCE on one logit, else cross-entropy)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits) - labels.to(logits.dtype)[:, None]
    return torch.softmax(logits, 1) - F.one_hot(labels.long(), logits.shape[1]).to(logits.dtype)


def _train_coefficient(class_index: str, renorm: bool):
    def coef(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        a = _alpha(logits, labels)
        if class_index == "train_label" and logits.shape[1] > 1:
            a = a.gather(1, labels.long()[:, None])
        return torch.sign(a) if renorm else a
    coef.__qualname__ = f"rp_train_{class_index}_{renorm}"
    return coef


def _query_coefficient(class_index: str):
    def coef(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if class_index == "train_label":
            return torch.ones(len(labels), 1, dtype=logits.dtype, device=logits.device)
        if logits.shape[1] == 1:
            return (2 * labels.to(logits.dtype) - 1)[:, None]
        return F.one_hot(labels.long(), logits.shape[1]).to(logits.dtype)
    coef.__qualname__ = f"rp_query_{class_index}"
    return coef


@dataclass
class RPConfig:
    weight_decay: float | None = None  # lambda; None: the training run's weight decay (reference code)
    class_index: str = "train_label"  # paper 000 Eq. 2; "query_label": Yeh et al.
    batch_size: int = 256  # ours

    def __post_init__(self) -> None:
        if self.class_index not in ("train_label", "query_label"):
            raise ValueError(f"class_index must be 'train_label' or 'query_label', got {self.class_index!r}")
        if self.weight_decay is not None and self.weight_decay <= 0:
            raise ValueError("weight_decay (lambda) must be > 0")


class RepresenterPoint(Defense):
    """Representer point (paper 000 Eq. 2)."""

    Config = RPConfig
    requires = frozenset({"model", "queries"})
    renorm: ClassVar[bool] = False

    def _lambda(self, evidence: Evidence) -> float:
        if self.config.weight_decay is not None:
            return float(self.config.weight_decay)
        wd = getattr(evidence.train_config, "weight_decay", None)
        if wd is None or wd <= 0:
            raise ValueError("representer point needs the weight decay lambda > 0: the training run "
                             "does not provide one; set the defense parameter weight_decay")
        return float(wd)

    def score(self, evidence: Evidence) -> np.ndarray:
        qx, qy = evidence.queries()
        x, y = evidence.train_inputs, evidence.train_labels
        lam = self._lambda(evidence)
        ci = self.config.class_index
        tmap = RepresentationMap(_train_coefficient(ci, self.renorm))
        qmap = RepresentationMap(_query_coefficient(ci))
        ck = WeightedCheckpoint(evidence.final_params, -1.0 / (2 * lam * len(y)))
        s = score_matrix(evidence.model_factory, [ck], x, y, qx, qy, reduction="dot", train_map=tmap,
                         query_map=qmap, options=EngineOptions(batch_size=self.config.batch_size,
                                                               query_batch_size=self.config.batch_size,
                                                               skip_zero_query=False))
        return s.numpy()


class RepresenterPointRenorm(RepresenterPoint):
    """Renormalized representer point (paper 000 Eq. 10): sgn(alpha_i)."""

    renorm = True


__all__ = ["InfluenceFunctions", "InfluenceFunctionsRenorm", "InfluenceFunctionsL", "RepresenterPoint",
           "RepresenterPointRenorm", "IFConfig", "RPConfig", "build_preconditioner"]
