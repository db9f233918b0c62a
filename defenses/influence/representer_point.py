"""Representer point (paper 000 Eq. 2) and its renormalized version (Eq. 10).

``I_RP(z_i, z_te) = -(1/(2 lambda n)) alpha_i <f_i, f_te>`` with ``f`` the penultimate features
(the input of the final linear layer) at theta_T and ``alpha_i`` the derivative of z_i's loss
w.r.t. one logit; Eq. 10 replaces ``alpha_i`` by ``sgn(alpha_i)``.  A one-logit binary model
(``a`` = logit of class 1, BCE loss) is read as the equivalent two-class softmax with logits
``(0, a)``, so ``dL/da_c = p_c - [c = y]`` is defined for both classes.  ``class_index`` says which
logit:

* ``"query_label"`` (default): the logit of the query's predicted class ``y_hat`` -- Yeh et al.'s
  representer value of the explained class, the reading of Eq. 2 / 10 in which ``a`` is the
  prediction being explained.  Training examples labelled ``y_hat`` get ``alpha_i = p_{y_hat} - 1
  <= 0`` (they support the prediction); the others ``alpha_i = p_{y_hat} >= 0`` (they oppose it).
* ``"train_label"``: Eq. 2 as printed, ``alpha_i = dL(z_i)/da_{y_i} = -(1 - p_{y_i})``, the logit
  of z_i's own label (equal to the default for examples labelled ``y_hat``; every other example
  then counts as a supporter too, weighted by its feature similarity).
* ``"single_logit"`` (the reference code, original_code.md Sec. 2.5): ``dL/da`` of a one-logit
  model's only logit, kept for comparison.  With non-negative (ReLU) features every label-0
  example then scores <= 0 for every query, so the supporters of a target predicted 0 rank last.

lambda is the training run's weight decay (``evidence.train_config.weight_decay``) unless
``weight_decay`` is given; it only scales the scores.  At a stationary point of
``(1/n) sum_i L_i + lambda ||W||^2`` over the final layer's weight ``W``, the representer
identity holds: ``sum_i I_RP(z_i, z_te)`` with ``class_index="query_label"`` equals the query's
pre-activation ``W f_te`` of class ``y_hat`` (bias excluded; Yeh et al. Thm. 3.1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.api import Defense, Evidence
from benchmark.config import ConfigError
from benchmark.registry import defenses
from defenses.influence.engine import EngineOptions, RepresentationMap, WeightedCheckpoint, score_matrix

CLASS_INDICES = ("train_label", "query_label", "single_logit")


def two_class_logits(logits: torch.Tensor) -> torch.Tensor:
    """A one-logit binary model's logits as the equivalent two-class softmax ``(0, a)``;
    multi-logit outputs are returned unchanged."""
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def logit_gradients(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``dL/da_c = p_c - [c = y]`` for every class ``c``, ``(B, C)`` with ``C >= 2`` (softmax
    cross-entropy in the two-class view of a one-logit model, which equals its BCE loss).  The
    label's entry ``p_y - 1`` is computed as ``-sum_{c != y} p_c`` (no cancellation when p_y ~ 1)."""
    z = two_class_logits(logits)
    p = torch.softmax(z, 1)
    onehot = F.one_hot(labels.long(), z.shape[1]).to(z.dtype)
    others = p * (1 - onehot)
    return others - onehot * others.sum(1, keepdim=True)


def _single_logit_gradient(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``dBCE/da = sigmoid(a) - y``, as ``-sigmoid(-a)`` for label 1 (no cancellation)."""
    y = labels.to(logits.dtype)[:, None]
    return torch.where(y > 0.5, -torch.sigmoid(-logits), torch.sigmoid(logits))


def _train_coefficient(class_index: str, renorm: bool):
    def coef(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if class_index == "single_logit":
            a = _single_logit_gradient(logits, labels)
        else:
            a = logit_gradients(logits, labels)
            if class_index == "train_label":
                a = a.gather(1, labels.long()[:, None])
        return torch.sign(a) if renorm else a
    coef.__qualname__ = f"rp_train_{class_index}_{renorm}"
    return coef


def _query_coefficient(class_index: str):
    def coef(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if class_index != "query_label":
            return torch.ones(len(labels), 1, dtype=logits.dtype, device=logits.device)
        return F.one_hot(labels.long(), two_class_logits(logits).shape[1]).to(logits.dtype)
    coef.__qualname__ = f"rp_query_{class_index}"
    return coef


@dataclass
class RPConfig:
    weight_decay: float | None = None  # lambda; None: the training run's weight decay (reference code)
    class_index: str = "query_label"  # see the module docstring; "train_label": Eq. 2 as printed; "single_logit": reference code
    batch_size: int = 256  # ours

    def __post_init__(self) -> None:
        if self.class_index not in CLASS_INDICES:
            raise ConfigError(f"class_index must be one of {CLASS_INDICES}, got {self.class_index!r}")
        if self.weight_decay is not None and self.weight_decay <= 0:
            raise ConfigError("weight_decay (lambda) must be > 0")


@defenses.register("rp", "Representer point (paper 000 Eq. 2): -(1/2 lambda n) dL_i/da_{y_i} <f_i, f_te>")
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
        model = evidence.model()
        if ci == "single_logit" and model.classifier.out_features != 1:
            raise ConfigError("class_index='single_logit' (the reference code's dL/da) needs a one-logit model")
        tmap = RepresentationMap(_train_coefficient(ci, self.renorm))
        qmap = RepresentationMap(_query_coefficient(ci))
        ck = WeightedCheckpoint(evidence.final_params, -1.0 / (2 * lam * len(y)))
        s = score_matrix(evidence.model_factory, [ck], x, y, qx, qy, reduction="dot", train_map=tmap,
                         query_map=qmap, options=EngineOptions(batch_size=self.config.batch_size,
                                                               query_batch_size=self.config.batch_size,
                                                               skip_zero_query=False))
        return s.numpy()


@defenses.register("rp-renorm", "Renormalized representer point (paper 000 Eq. 10): sgn(dL_i/da_{y_i})")
class RepresenterPointRenorm(RepresenterPoint):
    """Renormalized representer point (paper 000 Eq. 10): sgn(alpha_i)."""

    renorm = True


__all__ = ["CLASS_INDICES", "RPConfig", "RepresenterPoint", "RepresenterPointRenorm", "logit_gradients",
           "two_class_logits"]
