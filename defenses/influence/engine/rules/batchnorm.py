"""nn.BatchNorm1d/2d/3d in eval mode with running statistics: per-channel affine gradients."""
from __future__ import annotations

import torch
from torch import nn

from ..features import Dense, Feature


def batchnorm_supported(mod: nn.modules.batchnorm._BatchNorm) -> bool:
    """Running statistics present: without them eval mode uses batch statistics, which couple
    the examples of a batch."""
    return mod.running_mean is not None and mod.running_var is not None


def batchnorm_rule(mod: nn.modules.batchnorm._BatchNorm, a: torch.Tensor, d: torch.Tensor,
                   want: set[str]) -> dict[str, Feature]:
    # eval mode: y = gamma * (a - mu) * rstd + beta, so per channel
    # dL/dgamma = rstd * (sum d*a - mu * sum d),  dL/dbeta = sum d  (sums over positions)
    b, c = a.shape[0], a.shape[1]
    a3, d3 = a.reshape(b, c, -1), d.reshape(b, c, -1)
    dsum = d3.sum(-1)
    out: dict[str, Feature] = {}
    if "weight" in want:
        da = torch.einsum("bct,bct->bc", d3, a3) if a3.shape[-1] > 1 else (d3 * a3)[..., 0]
        rstd = torch.rsqrt(mod.running_var + mod.eps)
        out["weight"] = Dense(rstd * (da - mod.running_mean * dsum))
    if "bias" in want:
        out["bias"] = Dense(dsum)
    return out
