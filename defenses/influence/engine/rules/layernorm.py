"""nn.LayerNorm: weight ``sum_t delta_t * xhat_t``, bias ``sum_t delta_t`` over leading positions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..features import Dense, Feature


def layernorm_rule(mod: nn.LayerNorm, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    b = a.shape[0]
    ns = tuple(mod.normalized_shape)
    xhat = F.layer_norm(a, ns, None, None, mod.eps)
    out: dict[str, Feature] = {}
    if "weight" in want:
        out["weight"] = Dense((d * xhat).reshape(b, -1, math.prod(ns)).sum(1))
    if "bias" in want:
        out["bias"] = Dense(d.reshape(b, -1, math.prod(ns)).sum(1))
    return out
