"""nn.Conv1d / nn.Conv2d with zero padding: weight kept lazy (:class:`ConvFeature`), bias
``sum_t delta_t``."""
from __future__ import annotations

import torch
from torch import nn

from ..features import ConvFeature, Dense, Feature


def conv_supported(mod: nn.Conv1d | nn.Conv2d) -> bool:
    """Zero padding given explicitly (not ``padding_mode`` reflect/replicate/circular, nor
    ``padding="same"``)."""
    return mod.padding_mode == "zeros" and mod.padding != "same"


def conv_rule(mod: nn.Conv1d | nn.Conv2d, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    out: dict[str, Feature] = {}
    if "weight" in want:
        out["weight"] = ConvFeature(a, d, mod)
    if "bias" in want:
        out["bias"] = Dense(d.reshape(d.shape[0], d.shape[1], -1).sum(-1))
    return out
