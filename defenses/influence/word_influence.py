"""Word-level pairwise influence for text (paper 001 Sec. 3.2.1, Eqs. 5-6)::

    I(z_1, w)   = || (grad_theta grad_w F_{y_2}(z_2; theta))^T (H + damping I)^-1 grad_theta L(z_1) ||_2   (Eq. 6)
    I(z_1, z_2) = max_{w in x_2} I(z_1, w)                                                            (Eq. 5)

``w`` is a token's word embedding (the input of the encoder's embedding layer; "we resort to the
gradient ... with respect to the word embedding"), ``F`` the gold-label probability (the
example-level Eq. 4's ``F``, :func:`~defenses.influence.engine.gold_prob`), ``H`` the Hessian of
the mean training loss over the final linear layer ``theta = (W, b)`` (the scope of the
example-level text graph).  The norm drops Eq. 6's sign.

Eq. 6's vector is the directional derivative of the embedding gradient along
``v_1 = (H + damping I)^-1 grad L(z_1)``: a Jacobian-vector product.  With the scope the final
layer, ``F = F(W h(E) + b)`` and ``h`` (the head's input) does not depend on ``theta``, so

    d/dt grad_E F(theta + t v_1) = J_h(E_2)^T c(z_1, z_2),
    c = V_W^T g_2 + W^T Gamma_2 (V_W h_2 + v_b)                       (chain rule, ours)

with ``g_2 = dF/dz``, ``Gamma_2 = d^2F/dz^2`` at ``z_2``'s logits and ``v_1 = (V_W, v_b)``.  Every
``c`` lies in ``span(rows of W) + span(rows of V_W over all z_1)``; on an orthonormal basis ``B``
of that span, ``J_h^T c = (J_h^T B) (B^T c)``: ``k = |B|`` vector-Jacobian products per ``z_2``
(one backward pass of ``k`` copies of the sentence), then per word ``|u_w|^2 = a^T (G_w G_w^T) a``
with ``a = B^T c``.  ``rank=None`` takes the whole span (exact); ``rank=r`` keeps the rows of
``W`` exactly and the top ``r`` principal directions of the ``V_W`` rows (ours, for CPU; the
energy it keeps is returned).  A float64 brute force (:func:`defenses.influence.reference.
word_influence`) checks both.

Words: the tokens of ``x_2`` except padding and the first and last non-pad positions (the
tokenizer's [CLS] / [SEP], <s> / </s>); a WordPiece is a "word" (ours: the paper's BERT
tokenises to WordPieces too and does not say how pieces combine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from defenses.influence.engine import EngineOptions, StateDict, gold_prob, resolve_params
from defenses.influence.pairwise import build_preconditioner, per_example_gradients


@dataclass
class WordInfluence:
    matrix: np.ndarray  # (N, N), row = influencing z_1, column = z_2 (max over z_2's words)
    basis_size: int  # k, VJPs per example
    kept_energy: float  # share of the V_W rows' squared norm inside the basis (1.0 = exact)


def word_tokens(x: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Bool mask of the "words" of each row: non-pad, not the first or last non-pad token."""
    ids = x.long()
    valid = ids != pad_id
    n = valid.sum(1)
    pos = torch.arange(ids.shape[1])[None, :]
    return valid & (pos > 0) & (pos < (n - 1)[:, None])


def _check_model(model: nn.Module) -> None:
    for attr in ("embed", "features_embedded", "classifier", "pad_id"):
        if not hasattr(model, attr):
            raise ValueError(f"word-level influence needs a text model with embed(x), features_embedded(E, mask), "
                             f"a final linear 'classifier' and 'pad_id' (the 'hf-text' model); "
                             f"{type(model).__name__} has no {attr!r}")
    if not isinstance(model.classifier, nn.Linear):
        raise ValueError("word-level influence: model.classifier must be the final nn.Linear")


def _logit_derivatives(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``g = dF/dz`` (N, C) and ``Gamma = d^2F/dz^2`` (N, C, C) of the gold probability."""
    from torch.func import grad, hessian, vmap

    def f(zi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return gold_prob(zi[None], yi[None])[0]

    return vmap(grad(f))(z, y), vmap(hessian(f))(z, y)


def _basis(w: torch.Tensor, vw_rows: torch.Tensor, rank: int | None) -> tuple[torch.Tensor, float]:
    """Orthonormal ``B`` (d, k): the rows of ``W`` exactly, then the leading directions of the
    ``V_W`` rows outside them (all of them for ``rank=None``)."""
    d = w.shape[1]
    qw, _ = torch.linalg.qr(w.T)  # (d, C) orthonormal span of W's rows
    resid = vw_rows - (vw_rows @ qw) @ qw.T
    total = float((vw_rows ** 2).sum())
    if rank is None:
        rank = d
    _, s, vh = torch.linalg.svd(resid, full_matrices=False)
    tol = float(s.max()) * max(resid.shape) * torch.finfo(resid.dtype).eps if s.numel() else 0.0
    keep = min(int(rank), int((s > tol).sum()))
    b = torch.cat([qw, vh[:keep].T], 1)
    lost = float((s[keep:] ** 2).sum())
    return b, (1.0 if total == 0 else 1.0 - lost / total)


def word_influence(
    model_factory: Callable[[], nn.Module],
    params: StateDict,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    preconditioner: str = "exact",
    damping: float | None = 0.01,
    rank: int | None = None,
    batch_size: int = 4,
    opts: EngineOptions | None = None,
) -> WordInfluence:
    """``(N, N)`` Eq. 5 matrix over the final linear layer (module docstring); ``rank``: the
    basis of the ``V_W`` rows (``None`` = exact); ``batch_size``: sentences per backward pass
    (each replicated ``k`` times)."""
    n = len(y)
    if len(x) != n:
        raise ValueError(f"{len(x)} inputs but {n} labels")
    if rank is not None and rank < 0:
        raise ValueError(f"rank must be >= 0 or None, got {rank}")
    opts = opts or EngineOptions(skip_zero_query=False)
    model = model_factory()
    _check_model(model)
    model.load_state_dict(params)
    model.eval()
    names = resolve_params(model, ["classifier"])
    if names != ["classifier.weight", "classifier.bias"]:
        raise ValueError(f"word-level influence: the classifier scope must be its weight and bias, got {names}")
    pre = build_preconditioner(model_factory, params, x, y, names=names, preconditioner=preconditioner,
                               damping=damping)
    g = per_example_gradients(model_factory, params, x, y, names, "loss", opts)
    v = torch.cat([pre(g[i : i + opts.query_batch_size]) for i in range(0, n, opts.query_batch_size)]).double()
    del g
    w = model.classifier.weight.detach().double()  # (C, d)
    c_out, d = w.shape
    vw, vb = v[:, : c_out * d].reshape(n, c_out, d), v[:, c_out * d :]

    with torch.no_grad():
        h = torch.cat([model.features(x[i : i + 256]) for i in range(0, n, 256)]).double()
    z = h @ w.T + model.classifier.bias.detach().double()
    g2, gam2 = _logit_derivatives(z, y)

    basis, kept = _basis(w, vw.reshape(n * c_out, d), rank)
    k = basis.shape[1]
    vwb = torch.einsum("ncd,dk->nck", vw, basis)  # (N, C, k)
    wb = w @ basis  # (C, k)
    words = word_tokens(x, int(model.pad_id))
    out = np.empty((n, n), dtype=np.float32)
    for j0 in range(0, n, batch_size):
        j1 = min(n, j0 + batch_size)
        m = j1 - j0
        # J_h(E_2)^T B: one backward pass over k copies of each sentence
        emb, mask = model.embed(x[j0:j1])
        emb = emb.detach().repeat(k, 1, 1).requires_grad_(True)
        hh = model.features_embedded(emb, mask.repeat(k, 1))  # (k m, d)
        cot = basis.T.to(hh.dtype).repeat_interleave(m, 0)  # row j*m + i carries B[:, j]
        (gemb,) = torch.autograd.grad((hh * cot).sum(), emb)
        gemb = gemb.reshape(k, m, *gemb.shape[1:]).transpose(0, 1).double()  # (m, k, L', e)
        gram = torch.einsum("mkle,mjle->mlkj", gemb, gemb)  # (m, L', k, k)
        # a = B^T c(z_1, z_2) for every z_1
        t = torch.einsum("ncd,md->mnc", vw, h[j0:j1]) + vb[None]  # V_W h_2 + v_b
        a = torch.einsum("nck,mc->mnk", vwb, g2[j0:j1]) + torch.einsum(
            "ck,mce,mne->mnk", wb, gam2[j0:j1], t)
        sq = torch.einsum("mnk,mlkj,mnj->mnl", a, gram, a).clamp_min(0)  # (m, N, L')
        valid = words[j0:j1, : sq.shape[2]]
        sq = torch.where(valid[:, None, :], sq, torch.zeros(()))
        out[:, j0:j1] = sq.amax(2).sqrt().T.numpy()
    return WordInfluence(out, k, kept)
