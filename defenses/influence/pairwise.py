"""Training x training influence matrices for the influence graph (paper 001 Sec. 3.2).

:func:`pairwise_influence` -- paper 001 Sec. 3.2.1, Eq. 4, on the final model::

    I[i, j] = I(z_i, z_j) = - grad_theta F_{y_j}(z_j; theta)^T (H + damping I)^-1 grad_theta L(z_i; theta)

the influence of *upweighting* training example ``z_i`` on the predicted probability of
training example ``z_j``'s own label ``y_j`` (``F`` = :func:`~defenses.influence.engine.gold_prob`,
"the probability change of labeling x_j as y_j").  One engine tile: training side the per-example
loss gradient (no weight decay, eval mode), query side the gold-probability gradient, the damped
inverse Hessian ``P`` in between, checkpoint weight ``-1`` (Eq. 4's sign), the training set as
the query set.  Conventions:

* ``H`` is the Hessian of the *mean* training loss (Eq. 1's objective) over the named
  ``layers`` (the other parameters fixed), or its K-FAC / EK-FAC approximation
  (:mod:`defenses.influence.kfac`); ``damping`` is the effective damping of every solver,
  ``(H + damping I)^-1``.
* Eq. 4 has no ``1/N`` factor, and neither has ``I``: removing ``z_i`` changes ``F`` by about
  ``-I[i, j] / N`` (Eq. 2 with ``epsilon = -1/N``).  Positive = ``z_i`` raises ``z_j``'s gold
  probability (mutually supporting examples, e.g. two poisons with the same trigger).
* asymmetric; not symmetrised here (Eq. 7's edge weight ``(I + I^T) / 2`` is the graph's);
  the diagonal ``I[i, i]`` is returned as computed (Sec. 3.2.2 leaves ``i = j`` out).

Solvers (``preconditioner``): ``"exact"`` (explicit Hessian, float64 eigendecomposition),
``"cg"`` (batched conjugate gradient, full-data HVPs), ``"lissa"`` (the recursion
``h <- b + (1 - damping/scale) h - H h / scale``, whose fixed point divided by ``scale`` is
``(H + damping I)^-1 b``; ``lissa_scale=None`` estimates ``1.1 (|lambda|_max(H) + damping)`` by
power iteration -- ours), ``"ekfac"`` / ``"kfac"`` (:func:`~defenses.influence.kfac.fit_kfac`;
``damping=None`` = kronfluence's ``0.1 * mean eigenvalue`` per block).

Memory and output dtype: the matrix is computed in query tiles of ``tile_bytes`` of float64
engine scores each (default 64 MB: 838 columns at ``N = 10,000``) and written into ``out``
(default: a new array; pass an ``np.memmap`` for very large ``N``) in ``dtype``, float32 by
default: scores accumulate in float64 within a tile and are rounded once, a relative error of
``6e-8``, far below the estimator's own (float32 features, the solver), and at ``N = 10,000``
the matrix takes 400 MB instead of 800 MB.  A scope whose per-example gradients fit
:data:`DIRECT_BYTES` (e.g. a final layer) keeps them and takes one GEMM per tile; a larger one
takes one engine pass per tile, each recomputing the training-side gradients (the engine's loop
order: query tiles, then training batches), so there fewer, larger tiles are faster.

:func:`pairwise_gas` -- **ours, not in paper 001**: a GAS-based (paper 000 Eq. 12, Alg. 1)
pairwise similarity, ``S[i, j] = sum_c w_c cos(g_c(z_i), g_c(z_j))`` over the recorded
checkpoints (loss gradients, ``w_c = eta_c / b``: :func:`defenses.influence.tracin.
weighted_checkpoints`), the training set as the query set: symmetric, computed as one half and
mirrored.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from benchmark.training.trainer import TrainingRun
from defenses.influence.engine import (
    EngineOptions,
    GradientMap,
    Preconditioner,
    StateDict,
    WeightedCheckpoint,
    materialise,
    resolve_params,
    score_matrix,
)
from defenses.influence.hessian import SubsetObjective, solver_preconditioner
from defenses.influence.kfac import KFACConfig, fit_kfac
from defenses.influence.tracin import WEIGHTINGS, weighted_checkpoints

PRECONDITIONERS = ("exact", "cg", "lissa", "ekfac", "kfac")

#: Default size of one query tile's float64 engine scores (ours).
TILE_BYTES = 64 << 20

#: A scope whose per-example gradients for both sides (N x P float32 each) fit in this many bytes
#: is scored directly (ours): every training and query gradient computed once, then one GEMM per
#: query tile, instead of one engine pass per query tile (each recomputing the training side).
#: The final-layer scope of the small victims (650 parameters, N = 10,000) takes 52 MB.
DIRECT_BYTES = 1 << 30

#: Power-iteration steps of the automatic LiSSA scale (ours).
LISSA_POWER_STEPS = 50


def pairwise_influence(
    model_factory: Callable[[], nn.Module],
    params: StateDict,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    layers: str | Sequence[str],
    preconditioner: str = "exact",
    damping: float | None = 0.01,
    cg_max_iter: int = 100,
    cg_tol: float = 1e-10,
    lissa_scale: float | None = None,
    lissa_depth: int = 1000,
    lissa_repeats: int = 1,
    lissa_batch_size: int | None = None,
    kfac: KFACConfig | None = None,
    hessian_batch_size: int = 256,
    solver_dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    dtype: np.dtype | type = np.float32,
    out: np.ndarray | None = None,
    tile_bytes: int = TILE_BYTES,
    direct_bytes: int = DIRECT_BYTES,
    opts: EngineOptions | None = None,
) -> np.ndarray:
    """``(N, N)`` paper 001 Eq. 4 matrix ``I[i, j] = -grad F_{y_j}(z_j)^T (H + damping I)^-1
    grad L(z_i)`` at ``params`` (row ``i`` = the influencing training example).

    ``layers``: ``"all"`` or parameter / module names (the Hessian's scope; required, as for
    the ``if`` defense).  ``preconditioner``: one of :data:`PRECONDITIONERS` (module
    docstring); ``damping``: effective damping (``None`` only for K-FAC / EK-FAC: the per-block
    heuristic).  ``lissa_batch_size=None``: full-data HVPs (deterministic); an integer samples
    that many examples per HVP with ``generator``.  ``kfac``: fitting settings (its strategy is
    set from ``preconditioner``).  ``dtype`` / ``out`` / ``tile_bytes`` / ``direct_bytes``: output
    and memory (module docstring, :data:`DIRECT_BYTES`).  ``opts``: engine settings (its device, batch sizes, strategy)."""
    n = len(y)
    if len(x) != n:
        raise ValueError(f"{len(x)} inputs but {n} labels")
    names = _names(model_factory, params, layers)
    pre = build_preconditioner(model_factory, params, x, y, names=names, preconditioner=preconditioner,
                               damping=damping, cg_max_iter=cg_max_iter, cg_tol=cg_tol,
                               lissa_scale=lissa_scale, lissa_depth=lissa_depth, lissa_repeats=lissa_repeats,
                               lissa_batch_size=lissa_batch_size, kfac=kfac,
                               hessian_batch_size=hessian_batch_size, solver_dtype=solver_dtype,
                               generator=generator, device=(opts or EngineOptions()).device)
    return pairwise_scores(model_factory, params, x, y, names=names, preconditioner=pre, dtype=dtype,
                           out=out, tile_bytes=tile_bytes, direct_bytes=direct_bytes, opts=opts)


def pairwise_scores(
    model_factory: Callable[[], nn.Module],
    params: StateDict,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Sequence[str],
    preconditioner: Preconditioner,
    dtype: np.dtype | type = np.float32,
    out: np.ndarray | None = None,
    tile_bytes: int = TILE_BYTES,
    direct_bytes: int = DIRECT_BYTES,
    opts: EngineOptions | None = None,
) -> np.ndarray:
    """Eq. 4's matrix for a given preconditioner over ``names`` (e.g. one shared by several
    callers): training map ``loss``, query map ``gold_prob``, checkpoint weight ``-1``.  A scope
    whose gradients fit ``direct_bytes`` is scored directly (:func:`_direct_scores`), a larger
    one by one engine tile per query tile; both give the same matrix (a test)."""
    n = len(y)
    out = _output(out, n, dtype)
    opts = opts or EngineOptions(skip_zero_query=False)
    n_params = sum(int(np.prod(shape)) for shape in _shapes(model_factory, names).values())
    if 2 * n * n_params * 4 <= direct_bytes:
        return _direct_scores(model_factory, params, x, y, names, preconditioner, out, tile_bytes, opts)
    ck = [WeightedCheckpoint(params, -1.0)]
    for q0, q1 in _tiles(n, tile_bytes):
        qx, qy = (None, None) if (q0, q1) == (0, n) else (x[q0:q1], y[q0:q1])
        s = score_matrix(model_factory, ck, x, y, qx, qy, reduction="dot", train_map=GradientMap("loss"),
                         query_map=GradientMap("gold_prob"), layers=list(names), preconditioner=preconditioner,
                         options=opts)
        out[:, q0:q1] = s.numpy()
        del s
    return out


def build_preconditioner(
    model_factory: Callable[[], nn.Module],
    params: StateDict,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Sequence[str],
    preconditioner: str = "exact",
    damping: float | None = 0.01,
    cg_max_iter: int = 100,
    cg_tol: float = 1e-10,
    lissa_scale: float | None = None,
    lissa_depth: int = 1000,
    lissa_repeats: int = 1,
    lissa_batch_size: int | None = None,
    kfac: KFACConfig | None = None,
    hessian_batch_size: int = 256,
    solver_dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    device: str = "cpu",
) -> Preconditioner:
    """The damped inverse of the mean training loss's Hessian (or its K-FAC / EK-FAC
    approximation) over the parameters ``names``, as an engine preconditioner."""
    if preconditioner not in PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
    if damping is None and preconditioner not in ("ekfac", "kfac"):
        raise ValueError("damping=None (the heuristic 0.1 * mean eigenvalue) is for 'ekfac' / 'kfac' only")
    if damping is not None and damping < 0:
        raise ValueError("damping must be >= 0")
    names = list(names)
    if preconditioner in ("ekfac", "kfac"):
        cfg = replace(kfac or KFACConfig(), strategy=preconditioner)
        return fit_kfac(model_factory, params, x, y, layers=names, config=cfg, device=device).preconditioner(damping)
    if lissa_depth < 1 or lissa_repeats < 1 or (lissa_scale is not None and lissa_scale <= 0):
        raise ValueError("lissa_depth and lissa_repeats must be >= 1, lissa_scale > 0")
    model = model_factory()
    model.load_state_dict(params)
    obj = SubsetObjective(model, names, x, y, batch_size=hessian_batch_size, dtype=solver_dtype)
    lam = float(damping)
    scale = 1.0 if preconditioner != "lissa" else (lissa_scale if lissa_scale is not None else auto_lissa_scale(obj, lam))
    return solver_preconditioner(obj, names, preconditioner, lam, cg_max_iter=cg_max_iter, cg_tol=cg_tol,
                                 lissa_step_damp=lam / scale, lissa_scale=scale, lissa_depth=lissa_depth,
                                 lissa_repeats=lissa_repeats, lissa_batch_size=lissa_batch_size, generator=generator)


def auto_lissa_scale(obj: SubsetObjective, damping: float, steps: int = LISSA_POWER_STEPS) -> float:
    """``1.1 (|lambda|_max(H) + damping)`` by power iteration with full-data HVPs (ours): the
    smallest scale at which LiSSA's full-batch recursion is a contraction, with a margin."""
    v = torch.randn(1, obj.dim, generator=torch.Generator().manual_seed(0), dtype=obj.dtype)
    mu = 0.0
    for _ in range(steps):
        v = v / v.norm().clamp_min(1e-300)
        hv = obj.hvp(v)
        mu = abs(float((v * hv).sum()))
        v = hv
    return 1.1 * (mu + damping)


def pairwise_gas(
    model_factory: Callable[[], nn.Module],
    checkpoints: TrainingRun | Sequence[WeightedCheckpoint],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
    layerwise: bool = False,
    weighting: str = "lr_over_b",
    checkpoint_stride: int = 1,
    weight_decay_in_gradient: float = 0.0,
    dtype: np.dtype | type = np.float32,
    out: np.ndarray | None = None,
    tile_bytes: int = TILE_BYTES,
    opts: EngineOptions | None = None,
) -> np.ndarray:
    """**Ours, not in paper 001**: ``(N, N)`` GAS similarity between training examples,
    ``S[i, j] = sum_c w_c cos(g_c(z_i), g_c(z_j))`` (paper 000 Eq. 12 with the training set as
    the queries; ``layerwise``: GAS-L's sum of per-tensor cosines, Sec. 4.4).

    ``checkpoints``: a training run (weighted as the ``gas`` defense does: ``weighting``,
    ``checkpoint_stride``; :func:`~defenses.influence.tracin.weighted_checkpoints`) or the
    weighted checkpoints themselves (their multiplicities ignored, as GAS does).  ``layers=None``: all parameters (paper 000).  Symmetric:
    each query tile scores only the training rows from its first column on (one half plus the
    diagonal blocks, symmetrised) and fills the mirror image; one tile covering everything is
    the engine's own mirrored path.  ``opts``: engine settings (norm floor, zero-query skip:
    the ``gas`` defense's defaults)."""
    n = len(y)
    if len(x) != n:
        raise ValueError(f"{len(x)} inputs but {n} labels")
    if isinstance(checkpoints, TrainingRun):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {weighting!r}")
        if checkpoints.n_train != n:
            raise ValueError(f"the training run saw {checkpoints.n_train} examples but x holds {n}")
        cks = weighted_checkpoints(checkpoints, n, weighting, per_interval=False, stride=checkpoint_stride)
    else:
        cks = [WeightedCheckpoint(c.params, c.weight) for c in checkpoints]  # no multiplicities
    if not cks:
        raise ValueError("no checkpoints")
    reduction = "layerwise_cosine" if layerwise else "cosine"
    gmap = GradientMap("loss", param_l2=weight_decay_in_gradient)
    opts = opts or EngineOptions()
    out = _output(out, n, dtype)
    tiles = _tiles(n, tile_bytes)
    if len(tiles) == 1:  # the engine's symmetric path: diagonal blocks, rows below, mirrored
        s = score_matrix(model_factory, cks, x, y, reduction=reduction, train_map=gmap, query_map=gmap,
                         layers=layers, options=opts)
        out[:] = s.numpy()
        return out
    for q0, q1 in tiles:
        s = score_matrix(model_factory, cks, x[q0:], y[q0:], x[q0:q1], y[q0:q1], reduction=reduction,
                         train_map=gmap, query_map=gmap, layers=layers, options=opts)
        w = q1 - q0
        block = s[:w]
        out[q0:q1, q0:q1] = ((block + block.T) / 2).numpy()  # exactly symmetric
        below = s[w:].numpy()
        out[q1:, q0:q1] = below
        out[q0:q1, q1:] = below.T
        del s, block, below
    return out


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _names(model_factory: Callable[[], nn.Module], params: StateDict, layers: str | Sequence[str]) -> list[str]:
    """The parameter names of the scope ``layers`` (``"all"`` or names)."""
    if isinstance(layers, str) and layers != "all":
        layers = [layers]
    if not isinstance(layers, str) and (not layers or not all(isinstance(s, str) for s in layers)):
        raise ValueError(f"layers must be 'all' or a non-empty list of parameter / module names, got {layers!r}")
    model = model_factory()
    model.load_state_dict(params)
    return resolve_params(model, None if layers == "all" else list(layers))


def _shapes(model_factory: Callable[[], nn.Module], names: Sequence[str]) -> dict[str, torch.Size]:
    params = dict(model_factory().named_parameters())
    return {nm: params[nm].shape for nm in names}


def per_example_gradients(model_factory: Callable[[], nn.Module], params: StateDict, x: torch.Tensor,
                          y: torch.Tensor, names: Sequence[str], fn: str, opts: EngineOptions) -> torch.Tensor:
    """``(N, P)`` float32 per-example gradients of the scalar ``fn`` (``"loss"``, ``"gold_prob"``)
    over ``names``, concatenated in that order (the preconditioner's): the engine's gradient map
    (eval mode, no weight decay) in training batches of ``opts.batch_size``."""
    model = model_factory()
    model.load_state_dict(params)
    dev = torch.device(opts.device)
    bound = GradientMap(fn).bind(model.to(dev), list(names))
    rows = []
    for b0 in range(0, len(y), opts.batch_size):
        feats = bound(x[b0 : b0 + opts.batch_size].to(dev), y[b0 : b0 + opts.batch_size].to(dev))
        rows.append(torch.cat([materialise(feats[nm], opts) for nm in names], 1))
    return torch.cat(rows)


def _direct_scores(model_factory, params, x, y, names, preconditioner, out, tile_bytes, opts) -> np.ndarray:
    """Eq. 4 with every gradient computed once: ``-G (P Q)^T`` for the training-side loss
    gradients ``G`` and the query-side gold-probability gradients ``Q`` (the preconditioner
    applied in query batches of ``opts.query_batch_size``, as the engine does), one float32 GEMM
    per query tile, each tile's scores rounded to float64 and then to ``out``'s dtype."""
    g = per_example_gradients(model_factory, params, x, y, names, "loss", opts)
    q = per_example_gradients(model_factory, params, x, y, names, "gold_prob", opts)
    b = opts.query_batch_size
    pq = torch.cat([preconditioner(q[i : i + b]) for i in range(0, len(q), b)]).to(g.dtype)
    del q
    for q0, q1 in _tiles(len(y), tile_bytes):
        out[:, q0:q1] = (-(g @ pq[q0:q1].T).double()).cpu().numpy()
    return out


def _tiles(n: int, tile_bytes: int) -> list[tuple[int, int]]:
    """Query tiles whose ``(N, tile)`` float64 scores take at most ``tile_bytes`` (>= 1 column)."""
    if n == 0:
        return []
    width = max(1, min(n, int(tile_bytes) // (8 * n)))
    return [(q0, min(n, q0 + width)) for q0 in range(0, n, width)]


def _output(out: np.ndarray | None, n: int, dtype: np.dtype | type) -> np.ndarray:
    """``out`` checked, or a new ``(n, n)`` array of ``dtype``."""
    if out is None:
        return np.empty((n, n), dtype=dtype)
    if out.shape != (n, n):
        raise ValueError(f"out has shape {out.shape}, expected {(n, n)}")
    return out
