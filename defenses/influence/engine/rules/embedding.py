"""nn.Embedding (no ``max_norm``, no ``scale_grad_by_freq``): indexed rows of output gradients."""
from __future__ import annotations

import torch
from torch import nn

from ..features import Feature, Indexed


def embedding_supported(mod: nn.Embedding) -> bool:
    """Plain lookups: ``max_norm`` renormalises rows in place and ``scale_grad_by_freq``
    couples the examples of a batch."""
    return mod.max_norm is None and not mod.scale_grad_by_freq


def embedding_rule(mod: nn.Embedding, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    b = a.shape[0]
    idx = a.reshape(b, -1).long()
    g = d.reshape(b, idx.shape[1], mod.embedding_dim)
    if mod.padding_idx is not None:  # the padding row receives no gradient
        g = g * (idx != mod.padding_idx)[..., None].to(g.dtype)
    return {"weight": Indexed(idx, g, mod.num_embeddings)} if "weight" in want else {}
