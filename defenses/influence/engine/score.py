""":func:`score_matrix`: checkpoints outermost (each loaded once), then query tiles (held),
then training batches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .features import Workspace
from .maps import FeatureMap, as_map
from .options import REDUCTIONS, EngineOptions, WeightedCheckpoint
from .plan import plan_layers, query_tile_size
from .preconditioners import Preconditioner
from .tiles import query_side, score_tile, self_tile


@dataclass
class _Job:
    """Everything one call scores, fixed across checkpoints."""

    model_factory: Callable[[], nn.Module]
    train_x: torch.Tensor
    train_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    tspec: FeatureMap
    qspec: FeatureMap
    reduction: str
    layers: Sequence[str] | None
    precond: Preconditioner | None
    symmetric: bool  # training x training with equal maps: diagonal blocks + mirroring
    opts: EngineOptions


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
    job = _Job(model_factory, train_x, train_y, query_x, query_y, tspec, qspec, reduction, layers,
               preconditioner, symmetric, opts)
    scores = torch.zeros(len(train_y), len(query_y), dtype=torch.float64)
    tile: int | None = None  # query tile size, fixed at the first checkpoint
    ws = Workspace()
    for ci, ck in enumerate(checkpoints):
        if ck.weight == 0:
            continue
        tile = _score_checkpoint(job, ck, scores, tile, ws)
        if progress is not None:
            progress(ci + 1, len(checkpoints))
    if symmetric and tile is not None:
        _mirror(scores, tile)
    return scores


def _score_checkpoint(job: _Job, ck: WeightedCheckpoint, scores: torch.Tensor, tile: int | None,
                      ws: Workspace) -> int:
    """Add checkpoint ``ck``'s term to ``scores``; returns the query tile size (chosen here
    from the memory budget when ``tile`` is ``None``)."""
    opts = job.opts
    n, m = scores.shape
    dev = torch.device(opts.device)
    model = job.model_factory()
    model.load_state_dict(ck.params)
    model.to(dev).eval()
    pdtype = next(model.parameters()).dtype

    def put(x: torch.Tensor) -> torch.Tensor:  # floating inputs follow the model's dtype
        return x.to(dev, dtype=pdtype) if x.is_floating_point() else x.to(dev)

    tmap = job.tspec.bind(model, job.layers)
    qmap = job.qspec.bind(model, job.layers) if job.qspec.key != job.tspec.key else tmap
    if list(tmap.names) != list(qmap.names):
        raise ValueError(f"training-side layers {tmap.names} differ from query-side layers {qmap.names}")
    rows, mult64 = _train_rows(ck, n)
    # per-layer strategy from a first query chunk's shapes; the tile size from the budget
    qb = opts.query_batch_size
    sample = qmap(put(job.query_x[:qb]), job.query_y[:qb].to(dev))
    plan = plan_layers(sample, tmap.names, m, opts, job.precond)
    if tile is None:
        tile = query_tile_size(sample, qmap, plan, m, opts)
    for q0 in range(0, m, tile):
        q1 = min(m, q0 + tile)
        first = sample if (q0 == 0 and tile >= min(m, qb)) else None
        qs = query_side(qmap, tmap, put(job.query_x[q0:q1]), job.query_y[q0:q1].to(dev), opts,
                        job.precond, plan, first)
        sample = first = None
        live = qs.live
        if job.symmetric:  # diagonal block from the held features, then only the rows below it
            block = self_tile(qs, tmap, job.reduction, opts).double().cpu()
            block = (block + block.T) / 2  # exactly symmetric (GEMM rounding differs by order)
            scores[q0:q1, q0:q1] += ck.weight * block * live[None, :]
            todo = rows[rows >= q1]
        else:
            todo = rows
        for b0 in range(0, len(todo), opts.batch_size):
            idx = todo[b0 : b0 + opts.batch_size]
            tf = tmap(put(job.train_x[idx]), job.train_y[idx].to(dev))
            t = score_tile(tf, tmap, qs, job.reduction, opts, ws).double().cpu()
            w = ck.weight * (mult64[idx][:, None] if mult64 is not None else 1.0)
            scores[idx, q0:q1] += w * t * live[None, :]
        del qs
    return tile


def _train_rows(ck: WeightedCheckpoint, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training rows the checkpoint scores (non-zero multiplicity) and the float64
    multiplicities (``None``: every example once)."""
    mult = ck.train_multiplicity
    if mult is None:
        return torch.arange(n), None
    if tuple(mult.shape) != (n,):
        raise ValueError(f"train_multiplicity has shape {tuple(mult.shape)}, expected ({n},)")
    return torch.nonzero(mult).flatten(), mult.to(torch.float64)


def _mirror(scores: torch.Tensor, tile: int) -> None:
    """Symmetric case: fill the rows above each diagonal block from the transposed rows below."""
    m = scores.shape[1]
    for q0 in range(0, m, tile):
        q1 = min(m, q0 + tile)
        scores[:q0, q0:q1] = scores[q0:q1, :q0].T
