"""The shared influence engine: every gradient-similarity estimator is one *score tile*.

A tile is ``(training-side map, query-side map, optional preconditioner, reduction, checkpoint
weights)`` (DESIGN.md, "Core contracts").  :func:`score_matrix` evaluates

    S[i, j] = sum_c  w_c * m_c[i] * live_c[j] * R( phi_c(z_i), P psi_c(z_j) )

for every training example ``i`` and query ``j``, where ``phi``/``psi`` are the two maps at
checkpoint ``c`` (by default the per-example loss gradient, paper 000 Sec. 2), ``P`` an optional
preconditioner (a damped inverse Hessian for influence functions, paper 000 Eq. 1 / paper 001
Eq. 4), ``R`` a reduction (dot, cosine, layerwise cosine, or a cosine that normalises the
training side only, Eq. 9), ``w_c`` the checkpoint weight (``eta_t / b`` for TracIn-style
estimators, Eqs. 4, 5, 11, 12), ``m_c`` an optional per-training-example multiplicity (TracIn's
"example ``i`` was in this interval's batches", Eq. 4) and ``live_c[j] = 0`` when query ``j``'s
gradient is exactly zero at ``c`` (reference code: such a checkpoint is skipped).

How per-example gradients are obtained (no Python loop over examples):

* one batched forward pass in eval mode with forward hooks on the supported modules, which keep
  each module's input ``a``; one ``torch.autograd.grad`` call for the summed per-example scalar
  returns every hooked module's output gradient ``delta``.  The parameters are frozen and the
  graph starts at the hooked outputs, so the batch's weight gradients are never formed.
  Examples are independent in eval mode, so ``delta[i]`` is example ``i``'s own.
* per parameter tensor ("layer"), a rule turns ``(a, delta)`` into a *feature*:
  ``Factored`` (Linear and Conv weights: ``g_i = sum_t delta_it a_it^T``, positions ``t``),
  ``Indexed`` (Embedding weights), or ``Dense`` (biases, BatchNorm/LayerNorm/GroupNorm
  affine parameters: tiny per-example vectors).
* per layer, the engine either uses the Gram ("kernel") identity
  ``<g_i, g_j> = sum_{t,s} (a_it . a_js)(delta_it . delta_js)`` -- for a Linear layer
  ``(a_i . a_j)(delta_i . delta_j)``, plus ``delta_i . delta_j`` from its bias tensor, i.e. the
  ``(a_i . a_j + 1)(delta_i . delta_j)`` identity -- and its norm counterpart ("ghost norm"
  ``||g_i||^2 = ||a_i||^2 ||delta_i||^2``), or materialises per-example gradients when that is
  cheaper (conv layers with many positions, many queries).  The choice is a cost model
  (``strategy="auto"``, constants measured on the benchmark CPU) or forced per layer.  For conv
  layers the patch products ``a_it . a_js`` come from im2col or, when cheaper, from the Gram
  of the padded input pixels (summed over kernel offsets); per-example conv gradients come from
  the convolution weight-gradient kernel with one group per example (many positions) or from
  im2col + a batched GEMM into a reused buffer (few positions).
* parameters of modules without a rule (or used in a way the hooks cannot see) fall back to
  ``torch.func.vmap(grad(...))``.

Loop order: checkpoints outermost (each loaded once), then query tiles (query features are
computed once per checkpoint and tile and held), then training batches; memory is bounded by
the query-tile and batch sizes.  Scores accumulate in float64; features are computed in the
model's dtype (float32 in production).

Conventions (paper 000 Sec. 2 and the reference code, original_code.md Sec. 2.2-2.3), each an
option where the other choice is plausible:

* gradient of the per-example loss without a weight-decay term (``GradientMap(param_l2=...)``
  adds the reference GAS loop's ``wd * sum_p ||p||^2`` term instead);
* model in eval mode (not an option: in train mode BatchNorm couples the examples of a batch, so
  a per-example gradient is not defined);
* checkpoint weight ``eta_t / b`` (set by the caller, see ``defenses.influence.dynamic``);
* a checkpoint is skipped for a query whose gradient is exactly zero (``skip_zero_query``);
* norms clamped at ``MIN_NORM = 1e-8`` (``min_norm``);
* a "layer" of the layerwise reduction is one parameter tensor, and the layerwise cosine is the
  sum (not the mean) of the per-tensor cosines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from benchmark.training.losses import per_example_loss

#: Norm floor of the reference code (original_code.md Sec. 2.2, ``MIN_NORM``).
MIN_NORM = 1e-8

StateDict = Mapping[str, torch.Tensor]


# =====================================================================================
# Per-example scalar functions whose gradients the maps take
# =====================================================================================
def _is_single_logit(logits: torch.Tensor) -> bool:
    return logits.ndim == 2 and logits.shape[1] == 1


def gold_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The logit of the given label; for a single-logit binary model, ``+a`` for label 1 and
    ``-a`` for label 0 (the logit of class 0 relative to class 1)."""
    if _is_single_logit(logits):
        return logits[:, 0] * (2 * labels.to(logits.dtype) - 1)
    return logits.gather(1, labels.long()[:, None])[:, 0]


def gold_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Predicted probability of the given label: paper 001's score ``F_y`` (Sec. 3.2.1,
    "the probability change of labeling x_j as y_j")."""
    if _is_single_logit(logits):
        return torch.sigmoid(gold_logit(logits, labels))
    return torch.softmax(logits, dim=1).gather(1, labels.long()[:, None])[:, 0]


#: Named per-example scalars: ``loss`` (paper 000 Sec. 2, no weight decay), ``gold_prob`` /
#: ``gold_score`` (paper 001 Eq. 4's ``F_y``), ``gold_logit``.
OUTPUT_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "loss": per_example_loss,
    "gold_prob": gold_prob,
    "gold_score": gold_prob,
    "gold_logit": gold_logit,
}


def output_function(fn: str | Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if callable(fn):
        return fn
    if fn not in OUTPUT_FUNCTIONS:
        raise ValueError(f"unknown output function {fn!r}; choose one of {sorted(OUTPUT_FUNCTIONS)} "
                         f"or pass a callable (logits, labels) -> per-example scalars")
    return OUTPUT_FUNCTIONS[fn]


# =====================================================================================
# Features: per-example gradients of one parameter tensor, in compact form
# =====================================================================================
@dataclass
class Dense:
    """Per-example vectors ``x`` of shape ``(B, P)`` (flattened in the parameter's layout)."""

    x: torch.Tensor

    @property
    def batch(self) -> int:
        return self.x.shape[0]


@dataclass
class Factored:
    """``g_i = sum_t G[i, k, :, t] (x) A[i, k, :, t]`` for each group ``k``.

    ``a``: ``(B, groups, d_in, T)``, ``g``: ``(B, groups, d_out, T)``; the materialised gradient
    is ``(B, groups * d_out * d_in)`` in the layout of a Linear/Conv weight."""

    a: torch.Tensor
    g: torch.Tensor

    @property
    def batch(self) -> int:
        return self.a.shape[0]


@dataclass
class Indexed:
    """Embedding-weight gradient ``g_i = sum_t e_{idx[i, t]} G[i, t]^T`` (``V x d``)."""

    idx: torch.Tensor  # (B, T) long
    g: torch.Tensor  # (B, T, d)
    num_embeddings: int

    @property
    def batch(self) -> int:
        return self.idx.shape[0]


@dataclass
class ConvFeature:
    """Conv weight gradient kept as the layer's raw input ``a (B, C_in, *in)`` and output
    gradient ``g (B, C_out, *out)``; :meth:`factored` unfolds it (im2col) for the kernel
    identity, :func:`materialise` forms per-example gradients directly."""

    a: torch.Tensor
    g: torch.Tensor
    mod: nn.Module  # the Conv1d / Conv2d (geometry only)
    _factored: Factored | None = None

    @property
    def batch(self) -> int:
        return self.a.shape[0]

    @property
    def positions(self) -> int:
        return self.g[0, 0].numel()

    def _geometry(self):
        mod = self.mod
        if self.a.dim() == 3:  # Conv1d as a 1 x L image
            pad = 0 if mod.padding == "valid" else mod.padding[0]
            return (self.a[:, :, None, :], (1, mod.kernel_size[0]), (1, mod.dilation[0]), (0, pad),
                    (1, mod.stride[0]))
        pad = (0, 0) if mod.padding == "valid" else tuple(mod.padding)
        return self.a, tuple(mod.kernel_size), tuple(mod.dilation), pad, tuple(mod.stride)

    def pixel_cheaper(self) -> bool:
        """Whether the pixel-Gram form of the kernel identity costs less than the im2col form:
        ``a_t . a_s = sum_kk P[idx_kk(t), idx_kk(s)]`` with ``P`` the Gram of padded input pixels
        (``L^2 C_in`` instead of ``T^2 C_in kk``); ours, exact either way."""
        if PIXEL_GRAM == "never":
            return False
        if PIXEL_GRAM == "always":
            return True
        return self._pixel_cost() < self._unfold_cost()

    def _pixel_cost(self) -> float:
        """Per pair and group: pixel Gram + kk strided additions of T x T blocks (weighted by
        :data:`W_STRIDED`; the output-gradient Gram is common to both forms)."""
        a4, ksz, _, (ph, pw), _ = self._geometry()
        big_l = (a4.shape[2] + 2 * ph) * (a4.shape[3] + 2 * pw)
        return (big_l * big_l * (a4.shape[1] // self.mod.groups)
                + W_STRIDED * ksz[0] * ksz[1] * self.positions ** 2)

    def _unfold_cost(self) -> int:
        return self.positions ** 2 * self.mod.weight[0].numel()

    def factored(self) -> Factored:
        if self._factored is None:
            a4, ksz, dil, pad, st = self._geometry()
            cols = F.unfold(a4, ksz, dilation=dil, padding=pad, stride=st)  # (B, Cin*k, T)
            b, k, t = self.batch, self.mod.groups, cols.shape[-1]
            self._factored = Factored(cols.reshape(b, k, -1, t),
                                      self.g.reshape(b, k, self.mod.out_channels // k, t))
        return self._factored

    def materialise(self, ws: "Workspace | None" = None) -> torch.Tensor:
        """Per-example weight gradients.  Many positions: the convolution weight-gradient kernel
        with one group per example (no im2col); few positions: im2col + batched GEMM.  The
        threshold (:data:`CONV_GROUPED_MIN_POSITIONS`) is ours, measured on the benchmark CPU."""
        if self._factored is not None or self.positions <= CONV_GROUPED_MIN_POSITIONS:
            return materialise(self.factored(), ws)
        a4, ksz, dil, pad, st = self._geometry()
        b, mod = self.batch, self.mod
        w = mod.weight
        wshape = (w.shape[0], w.shape[1], *ksz)
        g4 = self.g if self.g.dim() == 4 else self.g[:, :, None, :]
        weight = w.detach().reshape(wshape)[None].expand(b, *wshape).flatten(0, 1)
        gw = torch.ops.aten.convolution_backward(
            g4.reshape(1, b * g4.shape[1], *g4.shape[2:]), a4.reshape(1, b * a4.shape[1], *a4.shape[2:]),
            weight, None, list(st), list(pad), list(dil), False, [0, 0], b * mod.groups,
            [False, True, False])[1]
        return gw.reshape(b, -1)


Feature = Union[Dense, Factored, Indexed, ConvFeature]


def _unlazy(f: Feature) -> Feature:
    return f.factored() if isinstance(f, ConvFeature) else f


class Workspace:
    """Reusable output buffers, one per shape: a fresh large allocation costs page faults on
    every call (glibc returns blocks above 32 MB to the OS), a reused one does not."""

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (tuple(shape), like.dtype, like.device)
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


def materialise(f: Feature, ws: Workspace | None = None) -> torch.Tensor:
    """``(B, P)`` per-example gradients.  With a workspace the result lives in a reused buffer,
    valid until the next call for the same shape."""
    if isinstance(f, Dense):
        return f.x
    if isinstance(f, ConvFeature):
        return f.materialise(ws)
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


def _row_sq(x: torch.Tensor) -> torch.Tensor:
    """Squared row norms without a temporary of ``x``'s size."""
    return torch.linalg.vector_norm(x, dim=1).square()


def _pixel_gram(f1: ConvFeature, f2: ConvFeature | None, chunk_elems: int) -> torch.Tensor:
    """Kernel identity for conv weights via pixel Grams: ``(B1, B2)`` inner products, or with
    ``f2=None`` the ``(B1,)`` squared norms.  ``sum_{t,s} (a_t . a'_s)(g_t . g'_s)`` where the
    patch products ``a_t . a'_s = sum_kk P[p_kk(t), p_kk(s)]`` are read from the Gram ``P`` of
    zero-padded input pixels through strided views (one per kernel offset ``kk``)."""
    a4, (kh, kw), (dh, dw), (ph, pw), (sh, sw) = f1._geometry()
    b1, cin, h, w = a4.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    k = f1.mod.groups
    c, do, t, big_l = cin // k, f1.mod.out_channels // k, ho * wo, hp * wp
    p1 = F.pad(a4, (pw, pw, ph, ph)).reshape(b1, k, c, big_l)
    g1 = f1.g.reshape(b1, k, do, t)

    def patch_products(pp: torch.Tensor) -> torch.Tensor:
        """``(..., L, L)`` pixel Gram -> ``(..., T, T)`` patch Gram (sum over kernel offsets)."""
        v = pp.reshape(*pp.shape[:-2], hp, wp, hp, wp)
        acc = None
        for i in range(kh):
            for j in range(kw):
                r = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                q = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                part = v[..., r, q, r, q]
                acc = part.clone() if acc is None else acc.add_(part)
        return acc.reshape(*pp.shape[:-2], t, t)

    if f2 is None:
        step = max(1, chunk_elems // max(1, big_l * big_l + 2 * t * t))
        out = []
        for s in range(0, b1, step):
            acc = 0
            for gi in range(k):
                pg = p1[s : s + step, gi]
                aa = patch_products(torch.bmm(pg.transpose(1, 2), pg))
                gg = torch.bmm(g1[s : s + step, gi].transpose(1, 2), g1[s : s + step, gi])
                acc = acc + (aa * gg).sum((-1, -2))
            out.append(acc)
        return torch.cat(out).clamp_min(0)
    a42 = f2._geometry()[0]
    if tuple(a42.shape[1:]) != tuple(a4.shape[1:]):
        return gram(f1.factored(), f2.factored(), chunk_elems)
    b2 = a42.shape[0]
    p2 = F.pad(a42, (pw, pw, ph, ph)).reshape(b2, k, c, big_l)
    g2 = f2.g.reshape(b2, k, do, t)
    step = max(1, chunk_elems // max(1, b2 * (big_l * big_l + 2 * t * t)))
    out = []
    for s in range(0, b1, step):
        cb = min(step, b1 - s)
        acc = 0
        for gi in range(k):
            q2 = p2[:, gi].permute(1, 0, 2).reshape(c, b2 * big_l)
            pp = torch.matmul(p1[s : s + cb, gi].transpose(1, 2), q2)  # (cb, L, B2*L)
            pp = pp.reshape(cb, big_l, b2, big_l).transpose(1, 2)  # (cb, B2, L, L) view
            aa = patch_products(pp)
            h2 = g2[:, gi].permute(1, 0, 2).reshape(do, b2 * t)
            gg = torch.matmul(g1[s : s + cb, gi].transpose(1, 2), h2)  # (cb, T, B2*T)
            gg = gg.reshape(cb, t, b2, t).transpose(1, 2)
            acc = acc + (aa * gg).sum((-1, -2))
        out.append(acc)
    return torch.cat(out)


def sq_norms(f: Feature, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """``(B,)`` squared norms of the per-example gradients, without materialising them."""
    if isinstance(f, ConvFeature) and f._factored is None and f.pixel_cheaper():
        return _pixel_gram(f, None, chunk_elems)
    f = _unlazy(f)
    if isinstance(f, Dense):
        return _row_sq(f.x)
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


def gram(f1: Feature, f2: Feature, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """``(B1, B2)`` inner products ``<g_i, g_j>`` of two features of the same layer."""
    if (isinstance(f1, ConvFeature) and isinstance(f2, ConvFeature) and f1._factored is None
            and f2._factored is None and f1.pixel_cheaper()):
        return _pixel_gram(f1, f2, chunk_elems)
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
    return materialise(f1) @ materialise(f2).T


def dot_dense(f: Feature, w: torch.Tensor, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """``(B, M)`` inner products of the per-example gradients with dense vectors ``w (M, P)``."""
    if isinstance(f, Dense):
        return f.x @ w.T.to(f.x.dtype)
    if isinstance(f, Indexed):
        b, t = f.idx.shape
        d = f.g.shape[2]
        wv = w.reshape(w.shape[0], f.num_embeddings, d)
        step = max(1, chunk_elems // max(1, w.shape[0] * t * d))
        out = []
        for s in range(0, b, step):
            idx, g = f.idx[s : s + step], f.g[s : s + step]
            rows = wv[:, idx.reshape(-1)]  # (M, c*T, d)
            c = idx.shape[0]
            out.append(torch.einsum("mnd,nd->nm", rows, g.reshape(c * t, d)).reshape(c, t, -1).sum(1))
        return torch.cat(out)
    return materialise(f) @ w.T.to(f.g.dtype)


def _rows(f: Feature, r0: int, r1: int) -> Feature:
    """Examples ``r0:r1`` of a feature."""
    if isinstance(f, Dense):
        return Dense(f.x[r0:r1])
    if isinstance(f, ConvFeature):
        if f._factored is not None:
            return _rows(f._factored, r0, r1)
        return ConvFeature(f.a[r0:r1], f.g[r0:r1], f.mod)
    if isinstance(f, Factored):
        return Factored(f.a[r0:r1], f.g[r0:r1])
    return Indexed(f.idx[r0:r1], f.g[r0:r1], f.num_embeddings)


def cat_batch(feats: Sequence[Feature]) -> Feature:
    """Concatenate features of one layer along the batch dimension (zero-padding positions)."""
    if len(feats) == 1:
        return feats[0]
    if all(isinstance(f, ConvFeature) and f._factored is None for f in feats) and \
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


def _cat_positions(feats: Sequence[Feature]) -> Feature:
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


# =====================================================================================
# Rules: module input/output-gradient -> per-parameter features
# =====================================================================================
def _linear_rule(mod: nn.Linear, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    b = a.shape[0]
    a3 = a.reshape(b, -1, mod.in_features).transpose(1, 2)[:, None]  # (B, 1, di, T)
    g3 = d.reshape(b, -1, mod.out_features).transpose(1, 2)[:, None]  # (B, 1, do, T)
    out: dict[str, Feature] = {}
    if "weight" in want:
        out["weight"] = Factored(a3, g3)
    if "bias" in want:
        out["bias"] = Dense(g3.sum(-1).reshape(b, -1))
    return out


def _conv_rule(mod: nn.Conv1d | nn.Conv2d, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    out: dict[str, Feature] = {}
    if "weight" in want:
        out["weight"] = ConvFeature(a, d, mod)
    if "bias" in want:
        out["bias"] = Dense(d.reshape(d.shape[0], d.shape[1], -1).sum(-1))
    return out


def _batchnorm_rule(mod: nn.modules.batchnorm._BatchNorm, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
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


def _layernorm_rule(mod: nn.LayerNorm, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    b = a.shape[0]
    ns = tuple(mod.normalized_shape)
    xhat = F.layer_norm(a, ns, None, None, mod.eps)
    out: dict[str, Feature] = {}
    if "weight" in want:
        out["weight"] = Dense((d * xhat).reshape(b, -1, math.prod(ns)).sum(1))
    if "bias" in want:
        out["bias"] = Dense(d.reshape(b, -1, math.prod(ns)).sum(1))
    return out


def _groupnorm_rule(mod: nn.GroupNorm, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    xhat = F.group_norm(a, mod.num_groups, None, None, mod.eps)
    dims = tuple(range(2, a.dim()))
    out: dict[str, Feature] = {}
    if "weight" in want:
        w = d * xhat
        out["weight"] = Dense(w.sum(dims) if dims else w)
    if "bias" in want:
        out["bias"] = Dense(d.sum(dims) if dims else d)
    return out


def _embedding_rule(mod: nn.Embedding, a: torch.Tensor, d: torch.Tensor, want: set[str]) -> dict[str, Feature]:
    b = a.shape[0]
    idx = a.reshape(b, -1).long()
    g = d.reshape(b, idx.shape[1], mod.embedding_dim)
    if mod.padding_idx is not None:  # the padding row receives no gradient
        g = g * (idx != mod.padding_idx)[..., None].to(g.dtype)
    return {"weight": Indexed(idx, g, mod.num_embeddings)} if "weight" in want else {}


RuleFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, set], dict]


def rule_for(mod: nn.Module) -> RuleFn | None:
    """The rule of a module, or ``None`` (its parameters then use the torch.func fallback).

    A subclass that overrides ``forward`` gets no rule (its forward may differ)."""
    def plain(base: type) -> bool:
        return isinstance(mod, base) and type(mod).forward is base.forward

    if plain(nn.Linear):
        return _linear_rule
    if plain(nn.Conv2d) or plain(nn.Conv1d):
        if mod.padding_mode != "zeros" or mod.padding == "same":
            return None
        return _conv_rule
    for base in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        if plain(base):
            if mod.running_mean is None or mod.running_var is None:
                return None  # eval mode would use batch statistics: examples not independent
            return _batchnorm_rule
    if plain(nn.LayerNorm):
        return _layernorm_rule
    if plain(nn.GroupNorm):
        return _groupnorm_rule
    if plain(nn.Embedding):
        if mod.max_norm is not None or mod.scale_grad_by_freq:
            return None
        return _embedding_rule
    return None


# =====================================================================================
# Feature maps
# =====================================================================================
class BoundMap(Protocol):
    """A feature map bound to one checkpoint's model."""

    names: list[str]  # layers, in order
    shapes: dict[str, torch.Size]  # parameter shape of each layer
    shift: dict[str, torch.Tensor] | None  # dense vector added to every example's gradient

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]: ...


class FeatureMap(Protocol):
    key: tuple  # equal keys => equal maps (used to detect symmetric training x training tiles)

    def bind(self, model: nn.Module, include: Sequence[str] | None) -> BoundMap: ...


def resolve_params(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """Names of the trainable parameters selected by ``layers`` (``None`` = all).  Each entry
    is a parameter name or a module name (selecting all parameters under it)."""
    names = getattr(model, "_influence_trainable", None)  # recorded before a bind froze them
    if names is None:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
    if layers is None:
        return list(names)
    if isinstance(layers, str):
        layers = [layers]
    chosen: list[str] = []
    for sel in layers:
        hit = [n for n in names if n == sel or n.startswith(sel + ".")]
        if not hit:
            modules = sorted({n.rsplit(".", 1)[0] for n in names if "." in n})
            raise ValueError(f"layer selector {sel!r} matches no trainable parameter; parameters "
                             f"live in modules {modules[:20]}{' ...' if len(modules) > 20 else ''}")
        chosen += [n for n in hit if n not in chosen]
    return [n for n in names if n in chosen]


@dataclass(frozen=True)
class GradientMap:
    """Map ``z -> grad_theta fn(z; theta)`` (per-example gradient of a scalar).

    ``fn``: ``"loss"`` (paper 000 Sec. 2), ``"gold_prob"``/``"gold_score"`` (paper 001 Eq. 4),
    ``"gold_logit"`` or a callable ``(logits, labels) -> (B,)``.
    ``param_l2``: adds ``param_l2 * sum_p ||p||^2`` to every example's objective (gradient
    ``2 * param_l2 * theta``), as the reference GAS loop does (influence_perf.md Sec. 1.8); the
    project default is 0 (paper 000 Sec. 2: gradients of the per-example loss).
    ``use_func``: compute every parameter with the torch.func fallback (for comparisons)."""

    fn: str | Callable = "loss"
    param_l2: float = 0.0
    use_func: bool = False

    @property
    def key(self) -> tuple:
        return ("grad", self.fn, self.param_l2, self.use_func)

    def bind(self, model: nn.Module, include: Sequence[str] | None) -> "BoundGradientMap":
        """Bind to ``model`` (put in eval mode; its parameters are frozen, since the backward
        pass starts at the hooked modules' outputs: pass a private copy)."""
        return BoundGradientMap(model, resolve_params(model, include), output_function(self.fn),
                                self.param_l2, self.use_func)


class BoundGradientMap:
    def __init__(self, model: nn.Module, names: list[str], fn: Callable, param_l2: float,
                 use_func: bool) -> None:
        self.model = model.eval()
        self.names = names
        self.fn = fn
        params = dict(model.named_parameters())
        self.shapes = {n: params[n].shape for n in names}
        wanted = set(names)
        # Every parameter is frozen: the graph starts at the hooked modules' outputs, so the
        # backward pass computes output gradients only, never the batch's weight gradients
        # (autograd.grad w.r.t. intermediate outputs does not prune them).  The torch.func
        # fallback passes its parameters explicitly and is unaffected.
        if getattr(model, "_influence_trainable", None) is None:
            model._influence_trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        for p in model.parameters():
            p.requires_grad_(False)
        self.shift = ({n: (2 * param_l2) * params[n].detach().reshape(-1) for n in names}
                      if param_l2 else None)
        # assign rules; a parameter claimed twice (tied weights) goes to the fallback
        owner: dict[int, list[tuple[str, str, str]]] = {}
        id_to_name = {id(p): n for n, p in model.named_parameters()}
        self.hooked: dict[str, tuple[nn.Module, RuleFn, dict[str, str]]] = {}
        if not use_func:
            for mname, mod in model.named_modules():
                rule = rule_for(mod)
                local = dict(mod.named_parameters(recurse=False))
                if rule is None or not local or set(local) - {"weight", "bias"}:
                    continue
                for lname, p in local.items():
                    owner.setdefault(id(p), []).append((mname, lname, id_to_name.get(id(p), "")))
        claimed: set[str] = set()
        for pid, owners in owner.items():
            if len(owners) != 1:
                continue
            mname, lname, full = owners[0]
            if full not in wanted:
                continue
            mod = model.get_submodule(mname)
            if mname not in self.hooked:
                self.hooked[mname] = (mod, rule_for(mod), {})
            self.hooked[mname][2][lname] = full
            claimed.add(full)
        self.fallback = [n for n in names if n not in claimed]
        self._needs_clone: set[str] | None = None  # learned on the first batch

    # -- hooks path -----------------------------------------------------------------------
    def _hooked_pass(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]:
        records: dict[str, list] = {m: [] for m in self.hooked}
        first = self._needs_clone is None
        clones: dict[str, list[torch.Tensor]] = {m: [] for m in self.hooked}

        def make_hook(mname: str):
            def hook(mod, inputs, out):
                new = None
                if not out.requires_grad:  # the graph starts here
                    out = new = out.detach().requires_grad_(True)
                records[mname].append((inputs[0].detach(), out))
                if first or mname in self._needs_clone:
                    c = out.clone()  # an in-place op downstream must not alter `out`
                    clones[mname].append(c)
                    return c
                return new
            return hook

        handles = [mod.register_forward_hook(make_hook(m)) for m, (mod, _, _) in self.hooked.items()]
        try:
            with torch.enable_grad():
                logits = self.model(x)
                s = self.fn(logits, y)
        finally:
            for h in handles:
                h.remove()
        if not s.requires_grad:
            raise RuntimeError("the per-example scalar does not depend on any hooked module's output")
        if s.shape != (len(y),):
            raise ValueError(f"the output function returned shape {tuple(s.shape)}; it must return "
                             f"one scalar per example, shape ({len(y)},)")
        if first:
            self._needs_clone = {m for m, cs in clones.items() if any(c._version > 0 for c in cs)}
        silent = [m for m, recs in records.items() if not recs]
        if silent:  # parameters used without calling the module: torch.func handles them
            for m in silent:
                self.fallback += list(self.hooked.pop(m)[2].values())
            self.fallback = [n for n in self.names if n in set(self.fallback)]
        outs = [o for m in self.hooked for (_, o) in records[m]]
        grads = torch.autograd.grad(s.sum(), outs, allow_unused=True) if outs else ()
        feats: dict[str, Feature] = {}
        gi = iter(grads)
        for m, (mod, rule, local) in self.hooked.items():
            per_call: dict[str, list[Feature]] = {}
            for a, o in records[m]:
                d = next(gi)
                d = torch.zeros_like(o) if d is None else d.detach()
                for lname, f in rule(mod, a, d, set(local)).items():
                    per_call.setdefault(lname, []).append(f)
            for lname, fs in per_call.items():
                feats[local[lname]] = _cat_positions(fs)
        return feats

    # -- torch.func fallback --------------------------------------------------------------
    def _func_pass(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> dict[str, Feature]:
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        buffers = dict(self.model.named_buffers())
        sub = {n: params[n] for n in self.fallback}
        fn = self.fn

        def one(p_sub, xi, yi):
            out = functional_call(self.model, ({**params, **p_sub}, buffers), (xi.unsqueeze(0),))
            return fn(out, yi.unsqueeze(0)).sum()

        g_fn = vmap(grad(one), in_dims=(None, 0, 0))
        parts = [g_fn(sub, x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(y), chunk)]
        return {n: Dense(torch.cat([p[n] for p in parts]).reshape(len(y), -1)) for n in self.fallback}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]:
        feats = self._hooked_pass(x, y) if self.hooked else {}
        if self.fallback:
            feats.update(self._func_pass(x, y))
        return feats


@dataclass(frozen=True)
class RepresentationMap:
    """Map ``z -> c(z) (x) f(z)``: penultimate features ``f = model.features(x)`` times a
    per-example coefficient vector ``c = coefficient(logits, labels)`` ``(B, k)``, one layer named
    ``"representer"``.  ``<c_i (x) f_i, c_j (x) f_j> = (c_i . c_j) <f_i, f_j>``: representer point
    (paper 000 Eqs. 2 and 10) is a dot tile of two such maps."""

    coefficient: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    name: str = "representer"

    @property
    def key(self) -> tuple:
        return ("repr", self.coefficient, self.name)

    def bind(self, model: nn.Module, include: Sequence[str] | None) -> "BoundRepresentationMap":
        if not hasattr(model, "features") or not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise ValueError("representer point needs a model with .features(x) and a final "
                             "nn.Linear .classifier (the benchmark model-zoo contract)")
        return BoundRepresentationMap(model.eval(), self)


class BoundRepresentationMap:
    def __init__(self, model: nn.Module, spec: RepresentationMap) -> None:
        self.model, self.spec = model, spec
        self.names = [spec.name]
        self.shapes = {spec.name: model.classifier.weight.shape}
        self.shift = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]:
        f = self.model.features(x).reshape(len(x), -1)
        c = self.spec.coefficient(self.model.classifier(f), y).reshape(len(x), -1).to(f.dtype)
        return {self.spec.name: Factored(f[:, None, :, None], c[:, None, :, None])}


def as_map(m: str | Callable | FeatureMap) -> FeatureMap:
    if isinstance(m, (GradientMap, RepresentationMap)) or hasattr(m, "bind"):
        return m
    return GradientMap(m)


# =====================================================================================
# Preconditioners, reductions, checkpoints, options
# =====================================================================================
class Preconditioner(Protocol):
    """Linear map applied to the query side: ``(M, P) -> (M, P)`` over parameters ``names``
    (their flattened gradients concatenated in this order)."""

    names: Sequence[str]

    def __call__(self, q: torch.Tensor) -> torch.Tensor: ...


@dataclass
class MatrixPreconditioner:
    """``q -> q @ matrix^T`` (e.g. an explicit damped inverse Hessian, symmetric)."""

    names: Sequence[str]
    matrix: torch.Tensor

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return (q.to(self.matrix.dtype) @ self.matrix.T).to(q.dtype)


@dataclass
class FunctionPreconditioner:
    """``q -> solve(q)`` for an iterative solver (CG, LiSSA)."""

    names: Sequence[str]
    solve: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return self.solve(q).to(q.dtype)


#: reduction name -> (layerwise, normalise training side, normalise query side)
REDUCTIONS: dict[str, tuple[bool, bool, bool]] = {
    "dot": (False, False, False),
    "cosine": (False, True, True),
    "layerwise_cosine": (True, True, True),
    "train_cosine": (False, True, False),  # paper 000 Eq. 9: no query norm
    "layerwise_train_cosine": (True, True, False),
}


@dataclass
class WeightedCheckpoint:
    """One term of the checkpoint sum: parameters, weight ``w_c`` and optional per-training-
    example multiplicity ``m_c`` (``None`` = every example once)."""

    params: StateDict
    weight: float
    train_multiplicity: torch.Tensor | None = None


@dataclass(frozen=True)
class EngineOptions:
    batch_size: int = 128  # training examples per forward/backward (ours)
    query_batch_size: int = 128  # query examples per forward/backward (ours)
    strategy: str | Mapping[str, str] = "auto"  # "auto" | "kernel" | "materialise", or per layer
    min_norm: float = MIN_NORM  # reference-code MIN_NORM
    skip_zero_query: bool = True  # reference code: checkpoint skipped when the test gradient is 0
    exploit_symmetry: bool = True  # training x training with identical sides: half the tiles
    memory_budget: int = 2 << 30  # bytes for held query features (ours)
    chunk_elems: int = 1 << 22  # largest temporary (elements): <= 16 MB stays in malloc's heap (ours)
    device: str = "cpu"

    def __post_init__(self) -> None:
        strategies = ("auto", "kernel", "materialise")
        vals = self.strategy.values() if isinstance(self.strategy, Mapping) else [self.strategy]
        bad = [v for v in vals if v not in strategies]
        if bad:
            raise ValueError(f"strategy must be one of {strategies} (or a mapping layer -> one of "
                             f"them); got {bad}")
        if self.batch_size < 1 or self.query_batch_size < 1:
            raise ValueError("batch_size and query_batch_size must be >= 1")


def _strategy_for(opts: EngineOptions, name: str) -> str:
    if isinstance(opts.strategy, Mapping):
        return opts.strategy.get(name, "auto")
    return opts.strategy


#: Cost-model weights (ours, calibrated on the benchmark CPU; only speed depends on them):
#: materialising costs ``T*di*do*W_MAT`` multiply-adds per example (im2col + batched GEMM with
#: a short inner dimension for few positions, the grouped weight-gradient kernel for many), plus
#: ``W_MEM`` per materialised value (memory traffic), plus the GEMM/norm ``di*do*(M+1)``.
W_MAT_FEW, W_MAT_MANY, W_MEM = 3.0, 0.3, 10.0
#: Cost of one strided addition in the pixel-Gram kernel, in multiply-adds (ours, measured).
W_STRIDED = 20.0
#: Above this many positions a conv layer is materialised with the grouped weight-gradient kernel.
CONV_GROUPED_MIN_POSITIONS = 100
#: Conv kernel identity through the pixel Gram: "auto" (when cheaper), "always", "never" (tests).
PIXEL_GRAM = "auto"


def _kernel_is_cheaper(f: Feature, m: int) -> bool:
    """Per training example cost: kernel identity (with its ghost norm) vs materialise + GEMM +
    norm, for ``m`` queries."""
    if isinstance(f, ConvFeature):
        mod = f.mod
        k, t = mod.groups, f.positions
        di, do = mod.weight[0].numel(), mod.out_channels // mod.groups
        w = W_MAT_MANY if t > CONV_GROUPED_MIN_POSITIONS else W_MAT_FEW
        a_part = min(f._unfold_cost(), f._pixel_cost()) if PIXEL_GRAM != "never" else f._unfold_cost()
        kernel = k * (a_part + t * t * do) * (m + 1)
        return kernel < k * di * do * (t * w + W_MEM + m + 1)
    elif isinstance(f, Factored):
        _, k, di, t = f.a.shape
        do = f.g.shape[2]
    elif isinstance(f, Indexed):
        t, d = f.g.shape[1], f.g.shape[2]
        return t * t * (d + 1) * (m + 1) < t * d + f.num_embeddings * d * (m + 1 + W_MEM)
    else:
        return False
    w = W_MAT_MANY if (isinstance(f, ConvFeature) and t > CONV_GROUPED_MIN_POSITIONS) else W_MAT_FEW
    kernel = k * t * t * (di + do) * (m + 1)
    mat = k * di * do * (t * w + W_MEM + m + 1)
    return kernel < mat


def _held_bytes(f: Feature, shape: torch.Size, strategy: str) -> int:
    """Bytes one query example occupies while its tile is held."""
    if isinstance(f, Dense) or strategy == "materialise":
        return math.prod(shape) * (f.x if isinstance(f, Dense) else f.g).element_size()
    if isinstance(f, (Factored, ConvFeature)):  # kernel: held as is (a ConvFeature is not unfolded)
        return (f.a[0].numel() + f.g[0].numel()) * f.a.element_size()
    return f.g[0].numel() * f.g.element_size() + f.idx.shape[1] * 8


# =====================================================================================
# Tiles
# =====================================================================================
@dataclass
class _QuerySide:
    feats: dict[str, Feature]  # Dense for materialised / preconditioned layers
    sq: dict[str, torch.Tensor]  # per-layer squared norms (with shift), (M,)
    live: torch.Tensor  # (M,) 1.0 where the query gradient is non-zero
    kernel: set[str]  # layers contracted with the kernel identity
    dense_only: set[str]  # layers where the training side must be materialised
    qshift: dict[str, torch.Tensor] = field(default_factory=dict)  # shift kept apart (kernel layers)
    tcross: dict[str, torch.Tensor] = field(default_factory=dict)  # <u_train, q_j> (+ u.u), (M,)


def _query_side(qmap: BoundMap, tmap: BoundMap, x: torch.Tensor, y: torch.Tensor,
                opts: EngineOptions, precond: Preconditioner | None, plan: dict[str, str],
                first: dict[str, Feature] | None = None) -> _QuerySide:
    names = qmap.names
    qb = opts.query_batch_size
    chunks = [first if (i == 0 and first is not None) else qmap(x[i : i + qb], y[i : i + qb])
              for i in range(0, len(y), qb)]
    feats: dict[str, Feature] = {}
    for n in names:
        parts = [c[n] for c in chunks]
        if plan[n] == "kernel":
            feats[n] = cat_batch(parts)
        else:
            feats[n] = Dense(torch.cat([materialise(p) for p in parts]))
    del chunks
    ush, tsh = qmap.shift or {}, tmap.shift or {}
    qshift: dict[str, torch.Tensor] = {}
    for n in names:  # fold the query-side shift into dense layers, keep it apart for kernel ones
        if n in ush:
            if isinstance(feats[n], Dense):
                feats[n] = Dense(feats[n].x + ush[n][None, :].to(feats[n].x.dtype))
            else:
                qshift[n] = ush[n]
    sq = {}
    for n in names:
        s = sq_norms(feats[n], opts.chunk_elems)
        if n in qshift:
            u = qshift[n]
            s = s + 2 * dot_dense(feats[n], u[None], opts.chunk_elems)[:, 0] + (u * u).sum()
        sq[n] = s
    total = torch.stack([sq[n] for n in names]).sum(0) if names else torch.zeros(len(y))
    live = (total > 0).to(torch.float64).cpu() if opts.skip_zero_query else torch.ones(len(y), dtype=torch.float64)
    dense_only: set[str] = set()
    if precond is not None:
        pnames = list(precond.names)
        if sorted(pnames) != sorted(names):
            raise ValueError(f"the preconditioner covers parameters {pnames} but the tile's layers are "
                             f"{names}; pass layers= equal to the preconditioner's names")
        sizes = [math.prod(qmap.shapes[n]) for n in pnames]
        q = torch.cat([materialise(feats[n]) + (qshift[n][None] if n in qshift else 0) for n in pnames], 1)
        w = precond(q)
        if w.shape != q.shape:
            raise ValueError(f"preconditioner returned shape {tuple(w.shape)}, expected {tuple(q.shape)}")
        for n, part in zip(pnames, torch.split(w, sizes, 1)):
            feats[n] = Dense(part.contiguous())
        qshift = {}
        dense_only = set(names)
    kernel = {n for n in names if plan[n] == "kernel" and n not in dense_only}
    tcross = {}
    for n in names:
        if n in tsh:
            u = tsh[n]
            c = dot_dense(feats[n], u[None], opts.chunk_elems)[:, 0]
            if n in qshift:
                c = c + (u * qshift[n]).sum()
            tcross[n] = c
    return _QuerySide(feats, sq, live, kernel, dense_only, qshift, tcross)


def _tile(tfeats: dict[str, Feature], tmap: BoundMap, qs: _QuerySide, reduction: str,
          opts: EngineOptions, ws: Workspace | None = None) -> torch.Tensor:
    """``(B, M)`` contribution of one training batch to one query tile, before weights."""
    layerwise, norm_t, norm_q = REDUCTIONS[reduction]
    tsh = tmap.shift or {}
    acc = None
    tsq = None
    for n in tmap.names:
        f, q = tfeats[n], qs.feats[n]
        if n in qs.kernel:
            k = gram(f, q, opts.chunk_elems)
            s = sq_norms(f, opts.chunk_elems) if norm_t else None
        else:  # materialise (into a reused buffer), in row chunks within the memory budget
            u = tsh.get(n)
            step = max(1, (opts.memory_budget // 8) // max(1, 4 * math.prod(tmap.shapes[n])))
            ks, ss, us = [], [], []
            for r0 in range(0, f.batch, step):
                fx = materialise(_rows(f, r0, r0 + step), ws)
                ks.append(fx @ q.x.T.to(fx.dtype))
                if norm_t:
                    ss.append(_row_sq(fx))
                    if u is not None:
                        us.append(fx @ u.to(fx.dtype))
            k = torch.cat(ks)
            s = torch.cat(ss) if norm_t else None
            if u is not None:
                k = k + qs.tcross[n][None, :]
                if norm_t:
                    s = s + 2 * torch.cat(us) + (u * u).sum()
            u = None
        if n in qs.qshift:
            k = k + dot_dense(f, qs.qshift[n][None], opts.chunk_elems)
        if n in qs.kernel and n in tsh:
            u = tsh[n]
            k = k + qs.tcross[n][None, :]
            if norm_t:
                s = s + 2 * dot_dense(f, u[None], opts.chunk_elems)[:, 0] + (u * u).sum()
        if layerwise:
            den = torch.ones_like(k)
            if norm_t:
                den = den * s.clamp_min(0).sqrt().clamp_min(opts.min_norm)[:, None]
            if norm_q:
                den = den * qs.sq[n].clamp_min(0).sqrt().clamp_min(opts.min_norm)[None, :]
            k = k / den
        else:
            tsq = s if tsq is None else (tsq + s if s is not None else tsq)
        acc = k if acc is None else acc + k
    if acc is None:
        raise ValueError("the tile has no layers (empty parameter selection)")
    if not layerwise:
        if norm_t:
            acc = acc / tsq.clamp_min(0).sqrt().clamp_min(opts.min_norm)[:, None]
        if norm_q:
            qn = torch.stack([qs.sq[n] for n in tmap.names]).sum(0)
            acc = acc / qn.clamp_min(0).sqrt().clamp_min(opts.min_norm)[None, :]
    return acc


def _self_tile(qs: _QuerySide, tmap: BoundMap, reduction: str, opts: EngineOptions) -> torch.Tensor:
    """The diagonal block of a symmetric training x training tile, from held features."""
    layerwise, norm_t, norm_q = REDUCTIONS[reduction]
    acc = None
    for n in tmap.names:
        k = gram(qs.feats[n], qs.feats[n], opts.chunk_elems)
        if n in qs.qshift:  # kernel layer with a shift: <g+u, g'+u>
            u = qs.qshift[n]
            c = dot_dense(qs.feats[n], u[None], opts.chunk_elems)[:, 0]
            k = k + c[:, None] + c[None, :] + (u * u).sum()
        if layerwise:
            nn_ = qs.sq[n].clamp_min(0).sqrt().clamp_min(opts.min_norm)
            k = k / ((nn_[:, None] if norm_t else 1) * (nn_[None, :] if norm_q else 1))
        acc = k if acc is None else acc + k
    if not layerwise:
        nn_ = torch.stack([qs.sq[n] for n in tmap.names]).sum(0).clamp_min(0).sqrt().clamp_min(opts.min_norm)
        if norm_t:
            acc = acc / nn_[:, None]
        if norm_q:
            acc = acc / nn_[None, :]
    return acc


def _plan(sample: dict[str, Feature], names: list[str], m: int, opts: EngineOptions,
          precond: Preconditioner | None) -> dict[str, str]:
    plan = {}
    for n in names:
        f = sample[n]
        s = _strategy_for(opts, n)
        if isinstance(f, Dense) or (precond is not None):
            plan[n] = "materialise"
        elif s == "auto":
            plan[n] = "kernel" if _kernel_is_cheaper(f, m) else "materialise"
        else:
            plan[n] = s
    return plan


def score_matrix(
    model_factory: Callable[[], nn.Module],
    checkpoints: Sequence[WeightedCheckpoint],
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    query_x: torch.Tensor | None = None,
    query_y: torch.Tensor | None = None,
    *,
    reduction: str = "dot",
    train_map: str | Callable | FeatureMap = "loss",
    query_map: str | Callable | FeatureMap = "loss",
    layers: Sequence[str] | None = None,
    preconditioner: Preconditioner | None = None,
    options: EngineOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``(n_train, n_queries)`` float64 scores ``sum_c w_c m_c[i] live_c[j] R(phi(z_i), P psi(z_j))``.

    ``query_x=None`` scores training x training (queries = the training set itself; the
    symmetric half is computed once when both maps are equal, no multiplicities are given and
    there is no preconditioner).  ``train_map``/``query_map``: a :class:`GradientMap`,
    :class:`RepresentationMap`, or the name of a per-example scalar (``"loss"``,
    ``"gold_score"``, ...; see :data:`OUTPUT_FUNCTIONS`).  ``layers``: parameter or module
    names restricting the gradient (``None`` = all trainable parameters).  ``reduction``: one of
    :data:`REDUCTIONS`.
    """
    opts = options or EngineOptions()
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {sorted(REDUCTIONS)}")
    if preconditioner is not None and REDUCTIONS[reduction][2]:
        raise ValueError(f"reduction {reduction!r} normalises the query side, which is ambiguous "
                         f"under a preconditioner; use 'dot' or 'train_cosine'")
    tspec, qspec = as_map(train_map), as_map(query_map)
    pairwise = query_x is None
    if pairwise:
        if query_y is not None:
            raise ValueError("query_y given without query_x")
        query_x, query_y = train_x, train_y
    elif query_y is None or len(query_y) != len(query_x):
        raise ValueError("query_x and query_y must both be given, with the same length")
    if len(train_y) != len(train_x):
        raise ValueError(f"{len(train_x)} training inputs but {len(train_y)} labels")
    symmetric = (pairwise and opts.exploit_symmetry and tspec.key == qspec.key
                 and preconditioner is None and all(c.train_multiplicity is None for c in checkpoints))
    n, m = len(train_y), len(query_y)
    dev = torch.device(opts.device)
    scores = torch.zeros(n, m, dtype=torch.float64)
    tile: int | None = None  # query tile size, fixed at the first checkpoint
    ws = Workspace()
    for ci, ck in enumerate(checkpoints):
        if ck.weight == 0:
            continue
        model = model_factory()
        model.load_state_dict(ck.params)
        model.to(dev).eval()
        pdtype = next(model.parameters()).dtype

        def put(x: torch.Tensor) -> torch.Tensor:  # floating inputs follow the model's dtype
            return x.to(dev, dtype=pdtype) if x.is_floating_point() else x.to(dev)

        tmap = tspec.bind(model, layers)
        qmap = qspec.bind(model, layers) if qspec.key != tspec.key else tmap
        if list(tmap.names) != list(qmap.names):
            raise ValueError(f"training-side layers {tmap.names} differ from query-side layers {qmap.names}")
        mult = ck.train_multiplicity
        if mult is not None:
            if tuple(mult.shape) != (n,):
                raise ValueError(f"train_multiplicity has shape {tuple(mult.shape)}, expected ({n},)")
            rows = torch.nonzero(mult).flatten()
            mult64 = mult.to(torch.float64)
        else:
            rows = torch.arange(n)
            mult64 = None
        # per-layer strategy from a first query chunk's shapes; the tile size from the budget
        sample = qmap(put(query_x[: opts.query_batch_size]), query_y[: opts.query_batch_size].to(dev))
        plan = _plan(sample, tmap.names, m, opts, preconditioner)
        if tile is None:
            per_q = sum(_held_bytes(sample[nm], qmap.shapes[nm], plan[nm]) for nm in tmap.names)
            tile = max(1, min(m, opts.memory_budget // max(1, per_q)))
            if tile < m and tile > opts.query_batch_size:  # tiles of whole query chunks
                tile -= tile % opts.query_batch_size
        for q0 in range(0, m, tile):
            q1 = min(m, q0 + tile)
            first = sample if (q0 == 0 and tile >= min(m, opts.query_batch_size)) else None
            qs = _query_side(qmap, tmap, put(query_x[q0:q1]), query_y[q0:q1].to(dev), opts,
                             preconditioner, plan, first)
            sample = first = None
            live = qs.live
            if symmetric:  # diagonal block from the held features, then only the rows below it
                block = _self_tile(qs, tmap, reduction, opts).double().cpu()
                block = (block + block.T) / 2  # exactly symmetric (GEMM rounding differs by order)
                scores[q0:q1, q0:q1] += ck.weight * block * live[None, :]
                todo = rows[rows >= q1]
            else:
                todo = rows
            for b0 in range(0, len(todo), opts.batch_size):
                idx = todo[b0 : b0 + opts.batch_size]
                tf = tmap(put(train_x[idx]), train_y[idx].to(dev))
                t = _tile(tf, tmap, qs, reduction, opts, ws).double().cpu()
                w = ck.weight * (mult64[idx][:, None] if mult64 is not None else 1.0)
                scores[idx, q0:q1] += w * t * live[None, :]
            del qs
        if progress is not None:
            progress(ci + 1, len(checkpoints))
    if symmetric and tile is not None:  # rows above each diagonal block: mirror
        for q0 in range(0, m, tile):
            q1 = min(m, q0 + tile)
            scores[:q0, q0:q1] = scores[q0:q1, :q0].T
    return scores
