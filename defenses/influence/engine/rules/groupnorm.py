"""nn.GroupNorm: per-channel weight ``sum_t delta_t * xhat_t`` and bias ``sum_t delta_t``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..features import Dense, Feature


def groupnorm_rule(mod: nn.GroupNorm, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    xhat = F.group_norm(a, mod.num_groups, None, None, mod.eps)
    dims = tuple(range(2, a.dim()))
    out: dict[str, Feature] = {}
    if "weight" in want:
        w = d * xhat
        out["weight"] = Dense(w.sum(dims) if dims else w)
    if "bias" in want:
        out["bias"] = Dense(d.sum(dims) if dims else d)
    return out
