"""Score tiles: the held query side of one checkpoint and query tile, and the ``(B, M)``
contribution of one training batch to it, in two steps: :func:`tile_parts` (the gradient work:
per-layer raw Grams and training squared norms) and :func:`combine_tile` (one reduction from
them).  A shared pass computes the parts once and combines them into every reduction it was
asked for; a single-reduction tile (:func:`score_tile`) runs the same two steps, so both give
bit-identical scores."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .algebra import cat_batch, dot_dense, gram, materialise, row_sq, rows, sq_norms
from .features import Dense, Feature, Workspace
from .maps import BoundMap
from .options import REDUCTIONS, EngineOptions
from .preconditioners import Preconditioner


@dataclass
class QuerySide:
    """Query features of one tile, held while every training batch is scored against them."""

    feats: dict[str, Feature]  # Dense for materialised / preconditioned layers
    sq: dict[str, torch.Tensor]  # per-layer squared norms (with shift), (M,)
    live: torch.Tensor  # (M,) 1.0 where the query gradient is non-zero
    kernel: set[str]  # layers contracted with the kernel identity
    dense_only: set[str]  # layers where the training side must be materialised
    qshift: dict[str, torch.Tensor] = field(default_factory=dict)  # shift kept apart (kernel layers)
    tcross: dict[str, torch.Tensor] = field(default_factory=dict)  # <u_train, q_j> (+ u.u), (M,)
    cache: dict = field(default_factory=dict)  # query norms, shared by the batches (combine_tile)


def query_side(qmap: BoundMap, tmap: BoundMap, x: torch.Tensor, y: torch.Tensor,
               opts: EngineOptions, precond: Preconditioner | None, plan: dict[str, str],
               first: dict[str, Feature] | None = None) -> QuerySide:
    """Features, squared norms and liveness of the queries ``(x, y)`` (``first``: the features
    of their first chunk, already computed), preconditioned if asked."""
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
            feats[n] = Dense(torch.cat([materialise(p, opts) for p in parts]))
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
        s = sq_norms(feats[n], opts)
        if n in qshift:
            u = qshift[n]
            s = s + 2 * dot_dense(feats[n], u[None], opts)[:, 0] + (u * u).sum()
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
        q = torch.cat([materialise(feats[n], opts) + (qshift[n][None] if n in qshift else 0)
                       for n in pnames], 1)
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
            c = dot_dense(feats[n], u[None], opts)[:, 0]
            if n in qshift:
                c = c + (u * qshift[n]).sum()
            tcross[n] = c
    return QuerySide(feats, sq, live, kernel, dense_only, qshift, tcross)


@dataclass
class TileParts:
    """What every reduction of one training batch x query tile is combined from: per layer the
    raw Gram ``<phi_i, P psi_j>`` (shifts included) and, when asked, the training side's squared
    norm (shift included).  One :func:`tile_parts` call serves every reduction of a shared pass."""

    k: list[torch.Tensor]  # per layer (in ``tmap.names`` order), (B, M)
    tsq: list[torch.Tensor] | None  # per layer (B,), None when no reduction normalises the training side
    cache: dict = field(default_factory=dict)  # norms and sums shared by the reductions (combine_tile)


def tile_parts(tfeats: dict[str, Feature], tmap: BoundMap, qs: QuerySide, opts: EngineOptions,
               ws: Workspace | None = None, train_norms: bool = True) -> TileParts:
    """Per-layer raw Grams of one training batch against one query tile and (``train_norms``)
    the training side's per-layer squared norms."""
    tsh = tmap.shift or {}
    ks_out: list[torch.Tensor] = []
    ss_out: list[torch.Tensor] | None = [] if train_norms else None
    for n in tmap.names:
        f, q = tfeats[n], qs.feats[n]
        if n in qs.kernel:
            k = gram(f, q, opts)
            s = sq_norms(f, opts) if train_norms else None
        else:  # materialise (into a reused buffer), in row chunks within the memory budget
            u = tsh.get(n)
            step = max(1, (opts.memory_budget // 8) // max(1, 4 * math.prod(tmap.shapes[n])))
            ks, ss, us = [], [], []
            for r0 in range(0, f.batch, step):
                fx = materialise(rows(f, r0, r0 + step), opts, ws)
                ks.append(fx @ q.x.T.to(fx.dtype))
                if train_norms:
                    ss.append(row_sq(fx))
                    if u is not None:
                        us.append(fx @ u.to(fx.dtype))
            k = torch.cat(ks)
            s = torch.cat(ss) if train_norms else None
            if u is not None:
                k = k + qs.tcross[n][None, :]
                if train_norms:
                    s = s + 2 * torch.cat(us) + (u * u).sum()
        if n in qs.qshift:
            k = k + dot_dense(f, qs.qshift[n][None], opts)
        if n in qs.kernel and n in tsh:
            u = tsh[n]
            k = k + qs.tcross[n][None, :]
            if train_norms:
                s = s + 2 * dot_dense(f, u[None], opts)[:, 0] + (u * u).sum()
        ks_out.append(k)
        if ss_out is not None:
            ss_out.append(s)
    if not ks_out:
        raise ValueError("the tile has no layers (empty parameter selection)")
    return TileParts(ks_out, ss_out)


def _norm(sq: torch.Tensor, opts: EngineOptions) -> torch.Tensor:
    """Clamped norm from a squared norm (reference code: ``max(||g||, MIN_NORM)``)."""
    return sq.clamp_min(0).sqrt().clamp_min(opts.min_norm)


def _cached(cache: dict, key, make):
    if key not in cache:
        cache[key] = make()
    return cache[key]


def combine_tile(parts: TileParts, qs: QuerySide, names: list[str], reduction: str,
                 opts: EngineOptions) -> torch.Tensor:
    """``(B, M)`` score of ``reduction`` from the parts of one training batch x query tile
    (no new gradient work: elementwise operations and sums only).  What several reductions
    share -- the per-layer and total norms, the sum of the raw Grams -- is computed once and
    cached on ``parts`` / ``qs`` (the same operations on the same inputs: bit-identical)."""
    layerwise, norm_t, norm_q = REDUCTIONS[reduction]
    if norm_t and parts.tsq is None:
        raise ValueError(f"reduction {reduction!r} needs the training norms: tile_parts(train_norms=True)")
    if not names:
        raise ValueError("the tile has no layers (empty parameter selection)")
    pc, qc = parts.cache, qs.cache
    if layerwise:
        acc = None
        for i, n in enumerate(names):
            k = parts.k[i]
            tn = _cached(pc, ("t", i), lambda: _norm(parts.tsq[i], opts)) if norm_t else None
            qn = _cached(qc, ("q", n), lambda: _norm(qs.sq[n], opts)) if norm_q else None
            if tn is not None and qn is not None:  # == k / (ones * tn * qn): times 1 is exact
                k = k / (tn[:, None] * qn[None, :])
            elif tn is not None:
                k = k / tn[:, None]
            elif qn is not None:
                k = k / qn[None, :]
            acc = k if acc is None else acc + k
        return acc

    def raw_sum() -> torch.Tensor:
        acc = None
        for k in parts.k:
            acc = k if acc is None else acc + k
        return acc

    def train_total() -> torch.Tensor:
        tsq = None
        for s in parts.tsq:
            tsq = s if tsq is None else tsq + s
        return _norm(tsq, opts)

    acc = _cached(pc, "sum", raw_sum)
    if norm_t:
        acc = acc / _cached(pc, "t_total", train_total)[:, None]
    if norm_q:
        key = ("q_total", tuple(names))
        qn = _cached(qc, key, lambda: _norm(torch.stack([qs.sq[n] for n in names]).sum(0), opts))
        acc = acc / qn[None, :]
    return acc


def score_tile(tfeats: dict[str, Feature], tmap: BoundMap, qs: QuerySide, reduction: str,
               opts: EngineOptions, ws: Workspace | None = None) -> torch.Tensor:
    """``(B, M)`` contribution of one training batch to one query tile, before weights
    (:func:`tile_parts` then :func:`combine_tile`, as the shared pass does)."""
    parts = tile_parts(tfeats, tmap, qs, opts, ws, train_norms=REDUCTIONS[reduction][1])
    return combine_tile(parts, qs, tmap.names, reduction, opts)


def self_parts(qs: QuerySide, tmap: BoundMap, opts: EngineOptions) -> list[torch.Tensor]:
    """Per-layer Grams of the diagonal block of a symmetric training x training tile, from the
    held features (the squared norms are the held ``qs.sq``)."""
    out = []
    for n in tmap.names:
        k = gram(qs.feats[n], qs.feats[n], opts)
        if n in qs.qshift:  # kernel layer with a shift: <g+u, g'+u>
            u = qs.qshift[n]
            c = dot_dense(qs.feats[n], u[None], opts)[:, 0]
            k = k + c[:, None] + c[None, :] + (u * u).sum()
        out.append(k)
    return out


def combine_self(ks: list[torch.Tensor], qs: QuerySide, names: list[str], reduction: str,
                 opts: EngineOptions) -> torch.Tensor:
    """The diagonal block of ``reduction`` from :func:`self_parts`."""
    layerwise, norm_t, norm_q = REDUCTIONS[reduction]
    acc = None
    for n, k in zip(names, ks):
        if layerwise:
            nn_ = qs.sq[n].clamp_min(0).sqrt().clamp_min(opts.min_norm)
            k = k / ((nn_[:, None] if norm_t else 1) * (nn_[None, :] if norm_q else 1))
        acc = k if acc is None else acc + k
    if not layerwise:
        nn_ = torch.stack([qs.sq[n] for n in names]).sum(0).clamp_min(0).sqrt().clamp_min(opts.min_norm)
        if norm_t:
            acc = acc / nn_[:, None]
        if norm_q:
            acc = acc / nn_[None, :]
    return acc


def self_tile(qs: QuerySide, tmap: BoundMap, reduction: str, opts: EngineOptions) -> torch.Tensor:
    """The diagonal block of a symmetric training x training tile, from held features."""
    return combine_self(self_parts(qs, tmap, opts), qs, tmap.names, reduction, opts)
