""":func:`score_matrices` (the shared pass: several terms at once) and :func:`score_matrix` (one
term): checkpoints outermost (each loaded once), then query tiles (held), then training batches,
whose per-layer Grams and norms are combined into every requested reduction."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .features import Workspace
from .maps import FeatureMap, as_map
from .options import REDUCTIONS, EngineOptions, Term, WeightedCheckpoint
from .plan import plan_layers, query_tile_size
from .preconditioners import Preconditioner
from .tiles import combine_self, combine_tile, query_side, self_parts, tile_parts


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
    terms: list[Term]
    layers: Sequence[str] | None
    precond: Preconditioner | None
    symmetric: set[Term]  # training x training with equal maps: diagonal blocks + mirroring
    opts: EngineOptions


@dataclass
class _RowGroup:
    """Training rows one checkpoint scores in batches, and the terms they feed."""

    rows: torch.Tensor
    terms: list[Term]
    mult: torch.Tensor | None = None  # float64 multiplicities, for the terms that use them
    partial: bool = False  # rows include uncredited ones (zero multiplicity), which those terms skip


def score_matrices(
    model_factory: Callable[[], nn.Module],
    checkpoints: Sequence[WeightedCheckpoint],
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    query_x: torch.Tensor | None = None,
    query_y: torch.Tensor | None = None,
    *,
    terms: Iterable[Term],
    train_map: str | Callable | FeatureMap = "loss",
    query_map: str | Callable | FeatureMap = "loss",
    layers: Sequence[str] | None = None,
    preconditioner: Preconditioner | None = None,
    options: EngineOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Term, torch.Tensor]:
    """The shared pass: ``{term: (n_train, n_queries) float64 scores}`` for several terms at once.

    A term is ``(reduction, use_multiplicity)``: ``use_multiplicity=True`` weights training
    example ``i`` at checkpoint ``c`` by ``train_multiplicity[i]`` (TracIn's interval credit;
    every example once where a checkpoint has none), ``False`` ignores the multiplicities
    (TracInCP, GAS).  Per checkpoint (loaded once), query tile (its features, norms and
    preconditioning computed once) and training batch, the gradient work is done once -- per-
    layer raw Grams and training squared norms (:func:`~.tiles.tile_parts`) -- and combined into
    every requested reduction (:func:`~.tiles.combine_tile`), then weighted per term.

    Training rows: all of them for the terms without multiplicity, only the credited ones (non-
    zero multiplicity) for the terms with it -- when a checkpoint has multiplicities and both
    kinds of term are asked for, these are two sets of batches (the credited rows are a fraction
    of all, e.g. one in ``checkpoints_per_epoch``).  Per-example results of batched CPU kernels
    depend (in the last bits) on the batch they are computed in, so scoring each kind on its own
    rows is what makes every term's matrix bit-identical to :func:`score_matrix` of that term
    alone, whatever else is asked for.  ``EngineOptions(share_multiplicity_batches=True)`` takes
    the credited rows' scores from the all-rows batches instead (one set of batches; those terms
    then agree with :func:`score_matrix` to float32 rounding only).

    The other arguments are those of :func:`score_matrix`.  Training x training
    (``query_x=None``), the symmetric path (diagonal blocks, the rows below them, mirroring)
    serves every term that applies no multiplicity when both maps are equal and there is no
    preconditioner; a term applying multiplicities scores all its rows.
    """
    opts = options or EngineOptions()
    terms = _check_terms(terms, preconditioner)
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
    # symmetric terms: training x training, equal maps, no preconditioner, rows not weighted
    weighted_rows = any(c.train_multiplicity is not None for c in checkpoints)
    symmetric = {t for t in terms if not (t[1] and weighted_rows)} if (
        pairwise and opts.exploit_symmetry and tspec.key == qspec.key and preconditioner is None) else set()
    job = _Job(model_factory, train_x, train_y, query_x, query_y, tspec, qspec, terms, layers,
               preconditioner, symmetric, opts)
    scores = {t: torch.zeros(len(train_y), len(query_y), dtype=torch.float64) for t in terms}
    tile: int | None = None  # query tile size, fixed at the first checkpoint
    ws = Workspace()
    for ci, ck in enumerate(checkpoints):
        if ck.weight == 0:
            continue
        tile = _score_checkpoint(job, ck, scores, tile, ws)
        if progress is not None:
            progress(ci + 1, len(checkpoints))
    if tile is not None:
        for t in symmetric:
            _mirror(scores[t], tile)
    return scores


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
    :data:`REDUCTIONS`.  The checkpoints' multiplicities, where given, are applied: this is the
    term ``(reduction, True)`` of :func:`score_matrices`.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {sorted(REDUCTIONS)}")
    term = (reduction, True)
    return score_matrices(model_factory, checkpoints, train_x, train_y, query_x, query_y, terms=[term],
                          train_map=train_map, query_map=query_map, layers=layers,
                          preconditioner=preconditioner, options=options, progress=progress)[term]


def _check_terms(terms: Iterable[Term], precond: Preconditioner | None) -> list[Term]:
    """The distinct terms, in order, validated."""
    out: list[Term] = []
    for t in terms:
        if not (isinstance(t, tuple) and len(t) == 2 and isinstance(t[1], bool)):
            raise ValueError(f"a term is (reduction, use_multiplicity: bool); got {t!r}")
        if t[0] not in REDUCTIONS:
            raise ValueError(f"unknown reduction {t[0]!r}; choose one of {sorted(REDUCTIONS)}")
        if precond is not None and REDUCTIONS[t[0]][2]:
            raise ValueError(f"reduction {t[0]!r} normalises the query side, which is ambiguous "
                             f"under a preconditioner; use 'dot' or 'train_cosine'")
        if t not in out:
            out.append(t)
    if not out:
        raise ValueError("no terms to score")
    return out


def _score_checkpoint(job: _Job, ck: WeightedCheckpoint, scores: dict[Term, torch.Tensor],
                      tile: int | None, ws: Workspace) -> int:
    """Add checkpoint ``ck``'s contribution to every term's matrix in ``scores``; returns the
    query tile size (chosen here from the memory budget when ``tile`` is ``None``)."""
    opts = job.opts
    n, m = len(job.train_y), len(job.query_y)
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
    names = list(tmap.names)
    groups = []  # (rows and their terms, symmetric?)
    for g in _row_groups(ck, n, job.terms, opts.share_multiplicity_batches and not job.symmetric):
        sym = [t for t in g.terms if t in job.symmetric]
        rest = [t for t in g.terms if t not in job.symmetric]
        groups += [(replace(g, terms=ts), flag) for ts, flag in ((sym, True), (rest, False)) if ts]
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
        for g, symmetric in groups:
            reductions = list(dict.fromkeys(r for r, _ in g.terms))  # each combined once per batch
            train_norms = any(REDUCTIONS[r][1] for r in reductions)
            todo = g.rows
            if symmetric:  # diagonal block from the held features, then only the rows below it
                ks = self_parts(qs, tmap, opts)
                for red in reductions:
                    block = combine_self(ks, qs, names, red, opts).double().cpu()
                    block = (block + block.T) / 2  # exactly symmetric (GEMM rounding differs by order)
                    add = ck.weight * block * live[None, :]
                    for t in g.terms:
                        if t[0] == red:
                            scores[t][q0:q1, q0:q1] += add
                del ks
                todo = todo[todo >= q1]
            for b0 in range(0, len(todo), opts.batch_size):
                idx = todo[b0 : b0 + opts.batch_size]
                tf = tmap(put(job.train_x[idx]), job.train_y[idx].to(dev))
                parts = tile_parts(tf, tmap, qs, opts, ws, train_norms)
                del tf
                combined = {r: combine_tile(parts, qs, names, r, opts).double().cpu() for r in reductions}
                del parts
                for t in g.terms:
                    red, use_mult = t
                    if use_mult and g.mult is not None:
                        mi = g.mult[idx]
                        add = (ck.weight * mi[:, None]) * combined[red] * live[None, :]
                        if g.partial:  # all-rows batches: only the credited rows count
                            keep = mi != 0
                            scores[t][idx[keep], q0:q1] += add[keep]
                            continue
                    else:
                        add = (ck.weight * 1.0) * combined[red] * live[None, :]
                    scores[t][idx, q0:q1] += add
        del qs
    return tile


def _row_groups(ck: WeightedCheckpoint, n: int, terms: list[Term], share: bool) -> list[_RowGroup]:
    """How checkpoint ``ck``'s training rows are batched: all rows for the terms that apply no
    multiplicity (or when ``ck`` has none), the credited rows (non-zero multiplicity) for those
    that do -- or, with ``share`` and both kinds of term, all rows for every term."""
    mult = ck.train_multiplicity
    everyone = torch.arange(n)
    if mult is None:
        return [_RowGroup(everyone, terms)]
    if tuple(mult.shape) != (n,):
        raise ValueError(f"train_multiplicity has shape {tuple(mult.shape)}, expected ({n},)")
    plain = [t for t in terms if not t[1]]
    weighted = [t for t in terms if t[1]]
    if not weighted:
        return [_RowGroup(everyone, terms)]
    mult64 = mult.to(torch.float64)
    if plain and share:
        return [_RowGroup(everyone, terms, mult64, partial=True)]
    credited = _RowGroup(torch.nonzero(mult).flatten(), weighted, mult64)
    return [_RowGroup(everyone, plain), credited] if plain else [credited]


def _mirror(scores: torch.Tensor, tile: int) -> None:
    """Symmetric case: fill the rows above each diagonal block from the transposed rows below."""
    m = scores.shape[1]
    for q0 in range(0, m, tile):
        q1 = min(m, q0 + tile)
        scores[:q0, q0:q1] = scores[q0:q1, :q0].T
