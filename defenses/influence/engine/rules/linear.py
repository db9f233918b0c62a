"""nn.Linear: weight ``sum_t delta_t a_t^T`` (factored, positions = leading dims), bias ``sum_t delta_t``."""
from __future__ import annotations

import torch
from torch import nn

from ..features import Dense, Factored, Feature


def linear_rule(mod: nn.Linear, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    b = a.shape[0]
    a3 = a.reshape(b, -1, mod.in_features).transpose(1, 2)[:, None]  # (B, 1, di, T)
    g3 = d.reshape(b, -1, mod.out_features).transpose(1, 2)[:, None]  # (B, 1, do, T)
    out: dict[str, Feature] = {}
    if "weight" in want:
        out["weight"] = Factored(a3, g3)
    if "bias" in want:
        out["bias"] = Dense(g3.sum(-1).reshape(b, -1))
    return out
