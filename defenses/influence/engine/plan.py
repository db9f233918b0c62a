"""Planning: per layer, the kernel identity or materialised gradients (a cost model, or forced),
and the query tile size from the memory budget."""
from __future__ import annotations

import math

import torch

from .features import ConvFeature, Dense, Factored, Feature, Indexed
from .maps import BoundMap
from .options import W_MAT_FEW, W_MAT_MANY, W_MEM, EngineOptions
from .preconditioners import Preconditioner


def kernel_is_cheaper(f: Feature, m: int, opts: EngineOptions) -> bool:
    """Per training example cost: kernel identity (with its ghost norm) vs materialise + GEMM +
    norm, for ``m`` queries."""
    if isinstance(f, ConvFeature):
        mod = f.mod
        k, t = mod.groups, f.positions
        di, do = mod.weight[0].numel(), mod.out_channels // mod.groups
        w = W_MAT_MANY if t > opts.conv_grouped_min_positions else W_MAT_FEW
        a_part = min(f.unfold_cost(), f.pixel_cost()) if opts.pixel_gram != "never" else f.unfold_cost()
        kernel = k * (a_part + t * t * do) * (m + 1)
        return kernel < k * di * do * (t * w + W_MEM + m + 1)
    if isinstance(f, Factored):
        _, k, di, t = f.a.shape
        do = f.g.shape[2]
        return k * t * t * (di + do) * (m + 1) < k * di * do * (t * W_MAT_FEW + W_MEM + m + 1)
    if isinstance(f, Indexed):
        t, d = f.g.shape[1], f.g.shape[2]
        return t * t * (d + 1) * (m + 1) < t * d + f.num_embeddings * d * (m + 1 + W_MEM)
    return False


def plan_layers(sample: dict[str, Feature], names: list[str], m: int, opts: EngineOptions,
                precond: Preconditioner | None) -> dict[str, str]:
    """Layer -> ``"kernel"`` or ``"materialise"``, from a sample of query features (dense
    features and preconditioned tiles are always materialised)."""
    plan = {}
    for n in names:
        f = sample[n]
        s = opts.strategy_for(n)
        if isinstance(f, Dense) or (precond is not None):
            plan[n] = "materialise"
        elif s == "auto":
            plan[n] = "kernel" if kernel_is_cheaper(f, m, opts) else "materialise"
        else:
            plan[n] = s
    return plan


def held_bytes(f: Feature, shape: torch.Size, strategy: str) -> int:
    """Bytes one query example occupies while its tile is held."""
    if isinstance(f, Dense) or strategy == "materialise":
        return math.prod(shape) * (f.x if isinstance(f, Dense) else f.g).element_size()
    if isinstance(f, (Factored, ConvFeature)):  # kernel: held as is (a ConvFeature is not unfolded)
        return (f.a[0].numel() + f.g[0].numel()) * f.a.element_size()
    return f.g[0].numel() * f.g.element_size() + f.idx.shape[1] * 8


def query_tile_size(sample: dict[str, Feature], qmap: BoundMap, plan: dict[str, str], m: int,
                    opts: EngineOptions) -> int:
    """Queries held at once: as many as the memory budget allows, in whole query chunks."""
    per_q = sum(held_bytes(sample[n], qmap.shapes[n], plan[n]) for n in qmap.names)
    tile = max(1, min(m, opts.memory_budget // max(1, per_q)))
    if tile < m and tile > opts.query_batch_size:
        tile -= tile % opts.query_batch_size
    return tile
