"""K-FAC / EK-FAC damped inverse curvature, as a preconditioner of the influence engine.

Paper 001 Eq. 4 needs ``H^-1`` (the risk Hessian at the final parameters); where the exact
Hessian of the named layers is too large, it is approximated, as in kronfluence (Grosse et al.
2023) and George et al. 2018 (EK-FAC), per *block* by a Kronecker-factored Fisher (the Gauss-
Newton matrix of the cross-entropy loss):

* a Linear / Conv1d / Conv2d layer is one block (its weight, with its bias as an extra input
  column of ones when the bias is selected too; a grouped convolution is one block per group):
  ``A = (1/N) sum_i sum_t a_it a_it^T`` (layer inputs, im2col patches for a convolution, ``t``
  the positions) and ``S = (1/N) sum_i (1/T) sum_t d_it d_it^T`` (output gradients of the
  per-example loss), the KFC convention for shared weights (Grosse & Martens 2016; for a plain
  Linear layer ``T = 1`` and both are per-example means).  Eigendecompositions ``A = Q_A
  diag(e_A) Q_A^T``, ``S = Q_S diag(e_S) Q_S^T`` in float64.
* curvature eigenvalues: ``kfac``: ``Lambda = e_S e_A^T``; ``ekfac``: the eigenvalue correction
  ``Lambda = (1/N) sum_i (Q_S^T G_i Q_A)^2`` (elementwise), ``G_i = sum_t d_it a_it^T`` example
  ``i``'s gradient of the block.
* any other selected tensor (a bias without its weight, BatchNorm / LayerNorm / GroupNorm affine
  parameters, a parameter of the torch.func fallback) of at most ``KFACConfig.max_dense``
  entries is a block of its own with the full ``S = (1/N) sum_i g_i g_i^T`` (``A = [1]``: then
  K-FAC and EK-FAC coincide and are exact for that block).  Embeddings are not supported.
* the preconditioner: per block ``V -> Q_S [(Q_S^T V Q_A) / (Lambda + damping)] Q_A^T``, i.e.
  ``(G + damping I)^-1`` with ``G`` the block-diagonal approximation; ``damping=None`` uses
  kronfluence's heuristic ``0.1 * mean(Lambda)`` per block.

Fisher (``KFACConfig.fisher``): ``"true"`` (default) takes the expectation over the model's own
predictive distribution *exactly*, ``sum_c p_ic d_ic d_ic^T`` (one gradient pass per class;
the Gauss-Newton matrix of cross-entropy), the deterministic limit of kronfluence's default,
which samples one label per example; ``"empirical"`` uses the observed labels (kronfluence's
``use_empirical_fisher=True``).

Per-example layer inputs and output gradients come from the engine's own gradient map
(:class:`~defenses.influence.engine.GradientMap`), so this module has no gradient code of its
own.  Facts about kronfluence are from its documentation and behaviour (tests map its
conventions: ``tests/test_pairwise_influence.py``); no code of it is used here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from defenses.influence.engine import (
    ConvFeature,
    Dense,
    Factored,
    FunctionPreconditioner,
    GradientMap,
    Indexed,
    StateDict,
    resolve_params,
)

STRATEGIES = ("ekfac", "kfac")
FISHERS = ("true", "empirical")

#: kronfluence's heuristic damping: this times the mean curvature eigenvalue of a block.
HEURISTIC_DAMPING_SCALE = 0.1


@dataclass(frozen=True)
class KFACConfig:
    """How the factors are fitted (ours unless marked)."""

    strategy: str = "ekfac"  # "ekfac" (eigenvalue-corrected) | "kfac"
    fisher: str = "true"  # "true" (exact expectation over the model's labels) | "empirical"
    batch_size: int = 128  # training examples per gradient pass
    max_dense: int = 4096  # largest tensor fitted as one full block (biases, norm affine params)
    chunk_elems: int = 1 << 22  # largest per-example-gradient temporary, in elements

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.fisher not in FISHERS:
            raise ValueError(f"fisher must be one of {FISHERS}, got {self.fisher!r}")
        if self.batch_size < 1 or self.max_dense < 1:
            raise ValueError("batch_size and max_dense must be >= 1")


@dataclass
class Block:
    """One block of the block-diagonal curvature: ``groups`` independent Kronecker factors.

    ``names``: the parameters it covers, in layout order (``[weight]``, ``[weight, bias]`` or
    ``[tensor]``); ``dense``: a single tensor with ``A = [1]`` (``d_in = 1``)."""

    names: list[str]
    shapes: list[torch.Size]
    groups: int
    d_out: int
    d_in: int  # including the bias column
    bias: bool
    dense: bool
    # float64 factors, filled by fit_kfac
    qa: torch.Tensor | None = None  # (groups, d_in, d_in) eigenvectors of A
    qs: torch.Tensor | None = None  # (groups, d_out, d_out) eigenvectors of S
    ea: torch.Tensor | None = None  # (groups, d_in) eigenvalues of A
    es: torch.Tensor | None = None  # (groups, d_out) eigenvalues of S
    lam: torch.Tensor | None = None  # (groups, d_out, d_in) curvature eigenvalues Lambda

    def to_matrix(self, q: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(M, groups, d_out, d_in)`` from the flattened gradients of this block's tensors."""
        m = next(iter(q.values())).shape[0]
        if self.dense:
            return q[self.names[0]].reshape(m, 1, self.d_out, 1)
        w = q[self.names[0]].reshape(m, self.groups, self.d_out, -1)
        if not self.bias:
            return w
        return torch.cat([w, q[self.names[1]].reshape(m, self.groups, self.d_out, 1)], dim=-1)

    def from_matrix(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Inverse of :meth:`to_matrix`: ``(M, numel)`` per tensor of :attr:`names`."""
        m = v.shape[0]
        if self.dense:
            return [v.reshape(m, -1)]
        if not self.bias:
            return [v.reshape(m, -1)]
        return [v[..., :-1].reshape(m, -1), v[..., -1].reshape(m, -1)]


@dataclass
class KFACFactors:
    """Fitted factors of the layers ``names`` (the engine's parameter order); cheap to turn into
    a preconditioner for any damping (:meth:`preconditioner`)."""

    names: list[str]
    blocks: list[Block]
    strategy: str
    fisher: str
    n: int
    sizes: dict[str, int] = field(default_factory=dict)

    def block_damping(self, block: Block, damping: float | None) -> float:
        """The damping of one block: ``damping``, or the heuristic ``0.1 * mean(Lambda)``."""
        if damping is None:
            return HEURISTIC_DAMPING_SCALE * float(block.lam.mean())
        return float(damping)

    def solve(self, q: torch.Tensor, damping: float | None, dtype: torch.dtype = torch.float64,
              chunk_elems: int = 1 << 22) -> torch.Tensor:
        """``(G + damping I)^-1 q`` for every row of ``q (M, P)``, computed in float64 in row chunks
        of at most ``chunk_elems`` entries (small temporaries), returned in ``dtype``."""
        p = sum(self.sizes[n] for n in self.names)
        if q.shape[1] != p:
            raise ValueError(f"expected {p} columns, got {q.shape[1]}")
        step = max(1, chunk_elems // max(1, p))
        if len(q) > step:
            return torch.cat([self.solve(q[r0 : r0 + step], damping, dtype, chunk_elems)
                              for r0 in range(0, len(q), step)])
        q = q.to(torch.float64)
        dev = q.device
        parts = dict(zip(self.names, torch.split(q, [self.sizes[n] for n in self.names], dim=1)))
        out: dict[str, torch.Tensor] = {}
        for b in self.blocks:
            v = b.to_matrix(parts)  # (M, k, do, di)
            lam = (b.lam + self.block_damping(b, damping)).to(dev)
            if bool((lam <= 0).any()):
                raise ValueError(f"block {b.names}: Lambda + damping has a non-positive entry; "
                                 f"increase the damping")
            qa, qs = b.qa.to(dev), b.qs.to(dev)
            t = qs.transpose(-1, -2) @ v @ qa / lam  # into the eigenbasis (broadcast over M), divide
            v = qs @ t @ qa.transpose(-1, -2)
            for n, part in zip(b.names, b.from_matrix(v)):
                out[n] = part
        return torch.cat([out[n] for n in self.names], dim=1).to(dtype)

    def preconditioner(self, damping: float | None) -> FunctionPreconditioner:
        """The engine preconditioner ``q -> (G + damping I)^-1 q`` over :attr:`names`."""
        return FunctionPreconditioner(list(self.names), lambda q: self.solve(q, damping, q.dtype))

    def curvature(self) -> torch.Tensor:
        """The dense block-diagonal ``(P, P)`` curvature ``G`` (float64; for tests, small P)."""
        p = sum(self.sizes[n] for n in self.names)
        eye = torch.eye(p, dtype=torch.float64)
        parts = dict(zip(self.names, torch.split(eye, [self.sizes[n] for n in self.names], dim=1)))
        out: dict[str, torch.Tensor] = {}
        for b in self.blocks:
            v = b.to_matrix(parts)
            t = (b.qs.transpose(-1, -2) @ v @ b.qa) * b.lam
            for n, part in zip(b.names, b.from_matrix(b.qs @ t @ b.qa.transpose(-1, -2))):
                out[n] = part
        return torch.cat([out[n] for n in self.names], dim=1)


def fit_kfac(model_factory: Callable[[], nn.Module], params: StateDict, x: torch.Tensor, y: torch.Tensor, *,
             layers: Sequence[str] | None, config: KFACConfig | None = None,
             device: str = "cpu") -> KFACFactors:
    """Fit K-FAC / EK-FAC factors of the mean training loss's Fisher over ``layers`` (parameter /
    module names; ``None`` = all trainable parameters) at ``params``, model in eval mode.

    Two passes over ``(x, y)`` (the second only for EK-FAC), each one engine gradient pass per
    batch (one per class for the true Fisher)."""
    cfg = config or KFACConfig()
    dev = torch.device(device)
    model = model_factory()
    model.load_state_dict(params)
    model.to(dev).eval()
    pdtype = next(model.parameters()).dtype
    names = resolve_params(model, layers)
    bound = GradientMap("loss").bind(model, names)
    n = len(y)
    if n == 0 or len(x) != n:
        raise ValueError(f"{len(x)} inputs but {n} labels")
    blocks: list[Block] | None = None
    acc_a: list[torch.Tensor] = []  # per block: sum_i sum_t a a^T
    acc_s: list[torch.Tensor] = []  # per block: sum_i (1/T) sum_t w d d^T

    def batches():
        for b0 in range(0, n, cfg.batch_size):
            xb = x[b0 : b0 + cfg.batch_size]
            xb = xb.to(dev, dtype=pdtype) if xb.is_floating_point() else xb.to(dev)
            yield xb, y[b0 : b0 + cfg.batch_size].to(dev)

    # pass 1: covariances (A does not depend on the label: from the first pass of a batch)
    for xb, yb in batches():
        for ci, (w, feats) in enumerate(_weighted_features(model, bound, xb, yb, cfg.fisher)):
            if blocks is None:
                blocks = _make_blocks(model, names, feats, cfg)
                acc_a = [torch.zeros(b.groups, b.d_in, b.d_in, dtype=torch.float64, device=dev) for b in blocks]
                acc_s = [torch.zeros(b.groups, b.d_out, b.d_out, dtype=torch.float64, device=dev) for b in blocks]
            for bi, b in enumerate(blocks):
                a, g = _block_factors(b, feats)
                if w is not None:  # true Fisher: class c weighted by p_ic
                    g = g * w.sqrt()[:, None, None, None]
                acc_s[bi] += torch.einsum("bkit,bkjt->kij", g, g) / g.shape[-1]
                if ci == 0:
                    acc_a[bi] += torch.einsum("bkit,bkjt->kij", a, a)
    for b, sa, ss in zip(blocks, acc_a, acc_s):  # fp64 eigendecompositions of the means
        b.ea, b.qa = torch.linalg.eigh((sa + sa.transpose(-1, -2)) / (2 * n))
        b.es, b.qs = torch.linalg.eigh((ss + ss.transpose(-1, -2)) / (2 * n))
        if cfg.strategy == "kfac":
            b.lam = b.es[:, :, None] * b.ea[:, None, :]
        else:
            b.lam = torch.zeros(b.groups, b.d_out, b.d_in, dtype=torch.float64, device=dev)
    # pass 2 (EK-FAC): eigenvalue correction from per-example gradients in the eigenbasis
    if cfg.strategy == "ekfac":
        for xb, yb in batches():
            for w, feats in _weighted_features(model, bound, xb, yb, cfg.fisher):
                for b in blocks:
                    a, g = _block_factors(b, feats)
                    ap = torch.einsum("kij,bkit->bkjt", b.qa, a)  # Q_A^T a
                    gp = torch.einsum("kij,bkit->bkjt", b.qs, g)  # Q_S^T d
                    step = max(1, cfg.chunk_elems // max(1, b.groups * b.d_out * b.d_in))
                    for r0 in range(0, len(ap), step):
                        gi = torch.einsum("bkot,bkit->bkoi", gp[r0 : r0 + step], ap[r0 : r0 + step])
                        sq = gi * gi
                        if w is not None:
                            sq = sq * w[r0 : r0 + step, None, None, None]
                        b.lam += sq.sum(0)
        for b in blocks:
            b.lam /= n
    for b in blocks:
        b.qa, b.qs, b.ea, b.es, b.lam = (t.cpu() for t in (b.qa, b.qs, b.ea, b.es, b.lam))
    sizes = {nm: math.prod(model.get_parameter(nm).shape) for nm in names}
    return KFACFactors(names, blocks, cfg.strategy, cfg.fisher, n, sizes)


def kfac_preconditioner(model_factory: Callable[[], nn.Module], params: StateDict, x: torch.Tensor,
                        y: torch.Tensor, *, layers: Sequence[str] | None, damping: float | None,
                        config: KFACConfig | None = None, device: str = "cpu") -> FunctionPreconditioner:
    """:func:`fit_kfac`, then its preconditioner ``(G + damping I)^-1`` (``damping=None``:
    kronfluence's ``0.1 * mean(Lambda)`` per block)."""
    return fit_kfac(model_factory, params, x, y, layers=layers, config=config,
                    device=device).preconditioner(damping)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _weighted_features(model: nn.Module, bound, xb: torch.Tensor, yb: torch.Tensor, fisher: str):
    """``(weight or None, features)`` pairs whose weighted sum of outer products is the batch's
    Fisher contribution: the observed labels (empirical), or every class ``c`` weighted by the
    model's ``p_ic`` (true Fisher, exact expectation)."""
    if fisher == "empirical":
        yield None, bound(xb, yb)
        return
    with torch.no_grad():
        logits = model(xb)
    if logits.ndim == 2 and logits.shape[1] == 1:  # one-logit binary model: labels {0, 1}
        p1 = torch.sigmoid(logits[:, 0].double())
        probs = torch.stack([1 - p1, p1], dim=1)
    else:
        probs = torch.softmax(logits.double(), dim=1)
    for c in range(probs.shape[1]):
        yield probs[:, c], bound(xb, torch.full_like(yb, c))


def _make_blocks(model: nn.Module, names: list[str], feats: dict, cfg: KFACConfig) -> list[Block]:
    """Group the selected tensors into blocks (weight + bias of a layer, else one tensor each)."""
    blocks: list[Block] = []
    used: set[str] = set()
    for nm in names:
        if nm in used:
            continue
        f = feats[nm]
        if isinstance(f, Indexed):
            raise ValueError(f"K-FAC does not support embedding parameter {nm!r}; leave it out of layers")
        if isinstance(f, (Factored, ConvFeature)):
            fac = f.factored() if isinstance(f, ConvFeature) else f
            mname = nm.rsplit(".", 1)[0] if "." in nm else ""
            bias = f"{mname}.bias" if mname else "bias"
            has_bias = bias in names and isinstance(feats.get(bias), Dense)
            _, k, di, _ = fac.a.shape
            do = fac.g.shape[2]
            blk_names = [nm, bias] if has_bias else [nm]
            shapes = [model.get_parameter(x).shape for x in blk_names]
            blocks.append(Block(blk_names, shapes, k, do, di + int(has_bias), has_bias, False))
            used.update(blk_names)
    for nm in names:  # what is left: one full block per tensor
        if nm in used:
            continue
        f = feats[nm]
        p = f.x.shape[1]
        if p > cfg.max_dense:
            raise ValueError(f"parameter {nm!r} ({p} entries) is neither a Linear/Conv weight nor "
                             f"small enough for a full block (max_dense={cfg.max_dense})")
        blocks.append(Block([nm], [model.get_parameter(nm).shape], 1, p, 1, False, True))
        used.add(nm)
    order = {nm: i for i, nm in enumerate(names)}
    blocks.sort(key=lambda b: order[b.names[0]])
    return blocks


def _block_factors(b: Block, feats: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 ``a (B, k, d_in, T)`` (with the bias's ones row) and ``d (B, k, d_out, T)``."""
    f = feats[b.names[0]]
    if b.dense:
        g = f.x.to(torch.float64)
        return torch.ones(len(g), 1, 1, 1, dtype=torch.float64, device=g.device), g[:, None, :, None]
    fac = f.factored() if isinstance(f, ConvFeature) else f
    a, g = fac.a.to(torch.float64), fac.g.to(torch.float64)
    if b.bias:
        a = torch.cat([a, torch.ones_like(a[:, :, :1])], dim=2)
    return a, g
