"""Algebra of features: materialised gradients, squared norms, Grams (the kernel identity),
products with dense vectors, and batching."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .conv_kernels import grouped_weight_grad, pixel_gram, same_pixels
from .features import ConvFeature, Dense, Factored, Feature, Indexed, Workspace
from .options import EngineOptions


def _unlazy(f: Feature) -> Feature:
    return f.factored() if isinstance(f, ConvFeature) else f


def row_sq(x: torch.Tensor) -> torch.Tensor:
    """Squared row norms without a temporary of ``x``'s size."""
    return torch.linalg.vector_norm(x, dim=1).square()


def materialise(f: Feature, opts: EngineOptions, ws: Workspace | None = None) -> torch.Tensor:
    """``(B, P)`` per-example gradients.  With a workspace the result lives in a reused buffer,
    valid until the next call for the same shape.  A conv layer with more than
    ``opts.conv_grouped_min_positions`` positions uses the grouped weight-gradient kernel (no
    im2col), one with fewer im2col + batched GEMM."""
    if isinstance(f, Dense):
        return f.x
    if isinstance(f, ConvFeature):
        if f.unfolded or f.positions <= opts.conv_grouped_min_positions:
            return materialise(f.factored(), opts, ws)
        return grouped_weight_grad(f)
    if isinstance(f, Factored):
        b, k, di, t = f.a.shape
        do = f.g.shape[2]
        out = ws.get((b, k, do, di), f.g) if ws is not None else None
        if t == 1:
            out = torch.mul(f.g[..., 0, None], f.a[..., 0][:, :, None, :], out=out)  # (B, k, do, di)
        else:
            out = torch.matmul(f.g, f.a.transpose(-1, -2), out=out)  # (B, k, do, T) @ (B, k, T, di)
        return out.reshape(b, k * do * di)
    b, t = f.idx.shape
    d = f.g.shape[2]
    out = ws.get((b, f.num_embeddings, d), f.g).zero_() if ws is not None else f.g.new_zeros(b, f.num_embeddings, d)
    out.scatter_add_(1, f.idx[:, :, None].expand(b, t, d), f.g)
    return out.reshape(b, -1)


def sq_norms(f: Feature, opts: EngineOptions) -> torch.Tensor:
    """``(B,)`` squared norms of the per-example gradients, without materialising them."""
    chunk_elems = opts.chunk_elems
    if isinstance(f, ConvFeature) and not f.unfolded and f.pixel_cheaper(opts.pixel_gram):
        return pixel_gram(f, None, chunk_elems)
    f = _unlazy(f)
    if isinstance(f, Dense):
        return row_sq(f.x)
    if isinstance(f, Factored):
        b, k, di, t = f.a.shape
        if t == 1:
            return ((f.a[..., 0] ** 2).sum(-1) * (f.g[..., 0] ** 2).sum(-1)).sum(1)
        out = []
        step = max(1, chunk_elems // (k * t * t))
        for s in range(0, b, step):
            a, g = f.a[s : s + step], f.g[s : s + step]
            aa = torch.matmul(a.transpose(-1, -2), a)  # (c, k, T, T)
            gg = torch.matmul(g.transpose(-1, -2), g)
            out.append((aa * gg).sum((1, 2, 3)))
        return torch.cat(out).clamp_min(0)
    b, t = f.idx.shape
    step = max(1, chunk_elems // max(1, t * t))
    out = []
    for s in range(0, b, step):
        idx, g = f.idx[s : s + step], f.g[s : s + step]
        same = (idx[:, :, None] == idx[:, None, :]).to(g.dtype)
        out.append((same * torch.matmul(g, g.transpose(1, 2))).sum((1, 2)))
    return torch.cat(out).clamp_min(0)


def gram(f1: Feature, f2: Feature, opts: EngineOptions) -> torch.Tensor:
    """``(B1, B2)`` inner products ``<g_i, g_j>`` of two features of the same layer."""
    chunk_elems = opts.chunk_elems
    if (isinstance(f1, ConvFeature) and isinstance(f2, ConvFeature) and not f1.unfolded
            and not f2.unfolded and f1.pixel_cheaper(opts.pixel_gram) and same_pixels(f1, f2)):
        return pixel_gram(f1, f2, chunk_elems)
    f1, f2 = _unlazy(f1), _unlazy(f2)
    if isinstance(f1, Dense) and isinstance(f2, Dense):
        return f1.x @ f2.x.T
    if isinstance(f1, Factored) and isinstance(f2, Factored):
        b1, k, di, t1 = f1.a.shape
        b2, _, do, t2 = f2.g.shape
        if t1 == 1 and t2 == 1:
            a1, a2 = f1.a[..., 0].transpose(0, 1), f2.a[..., 0].transpose(0, 1)  # (k, B, di)
            g1, g2 = f1.g[..., 0].transpose(0, 1), f2.g[..., 0].transpose(0, 1)
            return (torch.bmm(a1, a2.transpose(1, 2)) * torch.bmm(g1, g2.transpose(1, 2))).sum(0)
        # kernel with weight sharing: sum_{t,s} (a_it . a_js)(g_it . g_js), chunked over B1.
        # Only the (usually small) second side is permuted; the first is used in place.
        a2 = f2.a.permute(1, 0, 3, 2).reshape(k, b2 * t2, di)
        g2 = f2.g.permute(1, 0, 3, 2).reshape(k, b2 * t2, do)
        step = max(1, chunk_elems // max(1, b2 * t2 * t1))
        out = []
        for s in range(0, b1, step):
            c = min(step, b1 - s)
            acc = None
            for kk in range(k):
                aa = torch.matmul(a2[kk], f1.a[s : s + c, kk])  # (c, B2*T2, T1)
                gg = torch.matmul(g2[kk], f1.g[s : s + c, kk])
                part = (aa * gg).reshape(c, b2, t2 * t1).sum(-1)
                acc = part if acc is None else acc + part
            out.append(acc)
        return torch.cat(out)
    if isinstance(f1, Indexed) and isinstance(f2, Indexed):
        b1, t1 = f1.idx.shape
        b2, t2 = f2.idx.shape
        d = f1.g.shape[2]
        g2 = f2.g.reshape(b2 * t2, d)
        i2 = f2.idx.reshape(b2 * t2)
        step = max(1, chunk_elems // max(1, t1 * b2 * t2))
        out = []
        for s in range(0, b1, step):
            g1 = f1.g[s : s + step]
            c = g1.shape[0]
            gg = g1.reshape(c * t1, d) @ g2.T
            same = (f1.idx[s : s + step].reshape(c * t1, 1) == i2[None, :]).to(gg.dtype)
            out.append((gg * same).reshape(c, t1, b2, t2).sum((1, 3)))
        return torch.cat(out)
    return materialise(f1, opts) @ materialise(f2, opts).T


def dot_dense(f: Feature, w: torch.Tensor, opts: EngineOptions) -> torch.Tensor:
    """``(B, M)`` inner products of the per-example gradients with dense vectors ``w (M, P)``."""
    if isinstance(f, Dense):
        return f.x @ w.T.to(f.x.dtype)
    if isinstance(f, Indexed):
        b, t = f.idx.shape
        d = f.g.shape[2]
        wv = w.reshape(w.shape[0], f.num_embeddings, d)
        step = max(1, opts.chunk_elems // max(1, w.shape[0] * t * d))
        out = []
        for s in range(0, b, step):
            idx, g = f.idx[s : s + step], f.g[s : s + step]
            rows_ = wv[:, idx.reshape(-1)]  # (M, c*T, d)
            c = idx.shape[0]
            out.append(torch.einsum("mnd,nd->nm", rows_, g.reshape(c * t, d)).reshape(c, t, -1).sum(1))
        return torch.cat(out)
    return materialise(f, opts) @ w.T.to(f.g.dtype)


def rows(f: Feature, r0: int, r1: int) -> Feature:
    """Examples ``r0:r1`` of a feature."""
    if isinstance(f, Dense):
        return Dense(f.x[r0:r1])
    if isinstance(f, ConvFeature):
        if f.unfolded:
            return rows(f.factored(), r0, r1)
        return ConvFeature(f.a[r0:r1], f.g[r0:r1], f.mod)
    if isinstance(f, Factored):
        return Factored(f.a[r0:r1], f.g[r0:r1])
    return Indexed(f.idx[r0:r1], f.g[r0:r1], f.num_embeddings)


def cat_batch(feats: Sequence[Feature]) -> Feature:
    """Concatenate features of one layer along the batch dimension (zero-padding positions)."""
    if len(feats) == 1:
        return feats[0]
    if all(isinstance(f, ConvFeature) and not f.unfolded for f in feats) and \
            len({(tuple(f.a.shape[1:]), tuple(f.g.shape[1:])) for f in feats}) == 1:
        return ConvFeature(torch.cat([f.a for f in feats]), torch.cat([f.g for f in feats]), feats[0].mod)
    feats = [_unlazy(f) for f in feats]
    first = feats[0]
    if isinstance(first, Dense):
        return Dense(torch.cat([f.x for f in feats]))
    if isinstance(first, Factored):
        t = max(f.a.shape[-1] for f in feats)
        pad = lambda x: F.pad(x, (0, t - x.shape[-1]))  # noqa: E731 - zero positions add nothing
        return Factored(torch.cat([pad(f.a) for f in feats]), torch.cat([pad(f.g) for f in feats]))
    t = max(f.idx.shape[1] for f in feats)
    idx = torch.cat([F.pad(f.idx, (0, t - f.idx.shape[1])) for f in feats])
    g = torch.cat([F.pad(f.g, (0, 0, 0, t - f.g.shape[1])) for f in feats])
    return Indexed(idx, g, first.num_embeddings)


def cat_positions(feats: Sequence[Feature]) -> Feature:
    """Combine several calls of one module in a forward pass: the gradient is their sum."""
    if len(feats) == 1:
        return feats[0]
    feats = [_unlazy(f) for f in feats]
    first = feats[0]
    if isinstance(first, Dense):
        return Dense(torch.stack([f.x for f in feats]).sum(0))
    if isinstance(first, Factored):
        return Factored(torch.cat([f.a for f in feats], -1), torch.cat([f.g for f in feats], -1))
    return Indexed(torch.cat([f.idx for f in feats], 1), torch.cat([f.g for f in feats], 1),
                   first.num_embeddings)
