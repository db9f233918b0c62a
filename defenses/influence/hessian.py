"""The risk Hessian of paper 000 Eq. 1 restricted to a parameter subset, and three ways to
apply its damped inverse: explicit (factorise), conjugate gradient, LiSSA.

``H = (1/n) sum_i hess_theta L(z_i; theta_T)`` over the parameters ``names`` (the others held
fixed), loss without weight decay (paper 000 Sec. 2), model in eval mode.  Hessian-vector
products are reverse-over-reverse (double backward), batched over many vectors, and computed in ``dtype`` (float64 by default: a solve amplifies rounding by the condition
number, and the subset is small).
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from benchmark.training.losses import per_example_loss
from defenses.influence.engine.preconditioners import FunctionPreconditioner, MatrixPreconditioner


class SubsetObjective:
    """Mean per-example loss over ``(x, y)`` as a function of the flattened parameters
    ``names`` of ``model``."""

    def __init__(self, model: nn.Module, names: Sequence[str], x: torch.Tensor, y: torch.Tensor,
                 batch_size: int = 256, dtype: torch.dtype = torch.float64,
                 loss_fn: Callable = per_example_loss, head_cache: bool = True) -> None:
        if len(names) == 0:
            raise ValueError("empty parameter subset")
        self.model = copy.deepcopy(model).to(dtype).eval()
        self.names = list(names)
        self.dtype = dtype
        self.x = x.to(dtype) if x.is_floating_point() else x
        self.y = y
        self.n = len(y)
        self.batch_size = batch_size
        self.loss_fn = loss_fn
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        missing = [k for k in self.names if k not in params]
        if missing:
            raise ValueError(f"parameters {missing} are not in the model")
        self.fixed = {k: v for k, v in params.items() if k not in self.names}
        self.buffers = dict(self.model.named_buffers())
        self.shapes = [params[k].shape for k in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.w0 = torch.cat([params[k].reshape(-1) for k in self.names])
        self.dim = self.w0.numel()
        self.head_inputs = self._head_inputs(head_cache)

    def _head_inputs(self, enabled: bool) -> torch.Tensor | None:
        """The classifier's inputs ``model.features(x)`` (float64, once), when every parameter of
        the subset is the final ``nn.Linear`` ``model.classifier``'s and the model computes
        ``classifier(features(x))`` (checked on the first batch, bit for bit): the Hessian then
        needs the head only, instead of a double backward through the whole network per HVP
        batch (ours; the same function of the same numbers, a test).  ``None`` otherwise."""
        m, bs = self.model, self.batch_size
        clf = getattr(m, "classifier", None)
        if not enabled or not callable(getattr(m, "features", None)) or not isinstance(clf, nn.Linear):
            return None
        if not all(k.startswith("classifier.") for k in self.names) or not self.x.is_floating_point():
            return None
        with torch.no_grad():
            feats = torch.cat([m.features(self.x[s : s + bs]) for s in range(0, self.n, bs)])
            if feats.ndim != 2 or not torch.equal(m(self.x[:bs]), clf(feats[:bs])):
                return None
        return feats

    def _unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: p.reshape(s) for k, p, s in zip(self.names, torch.split(w, self.sizes), self.shapes)}

    def _loss_sum(self, w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.model, ({**self.fixed, **self._unflatten(w)}, self.buffers), (xb,))
        return self.loss_fn(out, yb).sum()

    def _head_loss_sum(self, w: torch.Tensor, fb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """``_loss_sum`` from the classifier's inputs ``fb`` (see :meth:`_head_inputs`)."""
        theta = {**self.fixed, **self._unflatten(w)}
        head = {k[len("classifier."):]: v for k, v in theta.items() if k.startswith("classifier.")}
        return self.loss_fn(functional_call(self.model.classifier, head, (fb,)), yb).sum()

    def hvp(self, v: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """``H v`` for ``v (k, P)``; ``H`` averages over all examples or over ``idx``.
        Reverse-over-reverse (double backward), batched over the ``k`` vectors."""
        v = v.to(self.dtype)
        rows = torch.arange(self.n) if idx is None else idx
        out = torch.zeros_like(v)
        with torch.enable_grad():
            for s in range(0, len(rows), self.batch_size):
                r = rows[s : s + self.batch_size]
                w = self.w0.clone().requires_grad_(True)
                if self.head_inputs is None:
                    loss = self._loss_sum(w, self.x[r], self.y[r])
                else:
                    loss = self._head_loss_sum(w, self.head_inputs[r], self.y[r])
                (g,) = torch.autograd.grad(loss, w, create_graph=True)
                if not g.requires_grad:  # loss linear in w: zero Hessian
                    continue
                try:
                    hv = torch.autograd.grad(g, w, v, retain_graph=True, is_grads_batched=True,
                                             allow_unused=True)[0]
                except RuntimeError:  # an op without a batching rule: one vector at a time
                    hv = torch.stack([torch.autograd.grad(g, w, vi, retain_graph=True, allow_unused=True)[0]
                                      for vi in v])
                if hv is not None:
                    out += hv
        return out / len(rows)

    def hessian(self, columns: int = 256) -> torch.Tensor:
        """The explicit ``(P, P)`` Hessian, built from HVPs on basis vectors.

        Row ``i`` is ``d(grad_i)/dw``.  A coordinate whose gradient is identically zero (e.g. an
        embedding's padding row, which autograd never updates) is a constant: its row is zero
        and its column is zeroed too; then the matrix is symmetrised (rounding)."""
        eye = torch.eye(self.dim, dtype=self.dtype)
        cols = [self.hvp(eye[i : i + columns]) for i in range(0, self.dim, columns)]
        h = torch.cat(cols)  # row i = H e_i (double backward: the i-th row of d(grad)/dw)
        frozen = (h == 0).all(1)
        h[:, frozen] = 0
        return (h + h.T) / 2


def damped_inverse(h: torch.Tensor, damping: float) -> torch.Tensor:
    """``(H + damping I)^-1`` by a symmetric eigendecomposition; an error names the fix if the
    damped Hessian is singular."""
    evals, evecs = torch.linalg.eigh(h + damping * torch.eye(len(h), dtype=h.dtype))
    if (evals.abs() < 1e-12 * max(1.0, float(evals.abs().max()))).any():
        raise ValueError(f"H + {damping} I is singular (smallest |eigenvalue| "
                         f"{float(evals.abs().min()):.3g}); increase the damping")
    return (evecs / evals) @ evecs.T


def conjugate_gradient(hvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, damping: float,
                       max_iter: int = 100, tol: float = 1e-8) -> torch.Tensor:
    """Solve ``(H + damping I) x = b`` for every row of ``b (k, P)`` at once (batched CG).
    Stops when every relative residual is below ``tol``.  Raises if a direction has
    non-positive curvature (the damped Hessian is not positive definite)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(1)
    bnorm = b.norm(dim=1).clamp_min(1e-300)
    active = rs.sqrt() / bnorm > tol
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        ap = hvp(p) + damping * p
        curv = (p * ap).sum(1)
        if bool((curv[active] <= 0).any()):
            raise ValueError(f"conjugate gradient met non-positive curvature: H + {damping} I is not "
                             f"positive definite; increase the damping or use solver='exact'")
        alpha = torch.where(active, rs / torch.where(active, curv, torch.ones_like(curv)), torch.zeros_like(rs))
        x += alpha[:, None] * p
        r -= alpha[:, None] * ap
        rs_new = (r * r).sum(1)
        beta = torch.where(active, rs_new / torch.where(active, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + beta[:, None] * p
        rs = rs_new
        active = rs.sqrt() / bnorm > tol
    return x


def lissa(hvp: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], b: torch.Tensor, n: int,
          damping: float, scale: float, depth: int, repeats: int, batch_size: int | None,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """LiSSA as in the reference code (original_code.md Sec. 2.4, FastIF / Koh & Liang):

        h <- b + (1 - damping) h - H_batch h / scale      (``depth`` times)
        estimate = mean over ``repeats`` of h / scale

    With full-batch HVPs (``batch_size=None``) the recursion is deterministic and converges to
    ``(H + damping * scale * I)^-1 b``: the effective damping is ``damping * scale``."""
    est = torch.zeros_like(b)
    for _ in range(repeats):
        h = b.clone()
        for _ in range(depth):
            idx = None if batch_size is None else torch.randint(n, (batch_size,), generator=generator)
            h = b + (1 - damping) * h - hvp(h, idx) / scale
        if not bool(torch.isfinite(h).all()):
            raise ValueError(f"LiSSA diverged (non-finite estimate); increase scale (now {scale}) so that "
                             f"it exceeds the Hessian's largest eigenvalue, or increase the damping")
        est += h / scale
    return est / repeats


def solver_preconditioner(obj: SubsetObjective, names: Sequence[str], solver: str, damping: float, *,
                          cg_max_iter: int, cg_tol: float, lissa_step_damp: float, lissa_scale: float,
                          lissa_depth: int, lissa_repeats: int, lissa_batch_size: int | None,
                          generator: torch.Generator | None):
    """The damped inverse of ``obj``'s Hessian as an engine preconditioner over ``names``:
    ``exact`` / ``cg`` apply ``(H + damping I)^-1``; ``lissa`` runs the recursion with per-step
    damping ``lissa_step_damp`` and ``lissa_scale`` (effective damping their product).  One
    dispatch for influence functions (paper 000 Eq. 1) and paper 001's pairwise influence (Eq. 4)."""
    names = list(names)
    dtype = obj.dtype
    if solver == "exact":
        return MatrixPreconditioner(names, damped_inverse(obj.hessian(), damping))
    if solver == "cg":
        return FunctionPreconditioner(names, lambda q: conjugate_gradient(
            obj.hvp, q.to(dtype), damping, cg_max_iter, cg_tol))
    if solver == "lissa":
        return FunctionPreconditioner(names, lambda q: lissa(
            obj.hvp, q.to(dtype), obj.n, lissa_step_damp, lissa_scale, lissa_depth, lissa_repeats,
            lissa_batch_size, generator))
    raise ValueError(f"solver must be 'exact', 'cg' or 'lissa', got {solver!r}")
