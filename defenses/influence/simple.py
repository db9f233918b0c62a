"""A straightforward batched TracInCP / GAS (paper 000, Eqs. 5 and 12, Alg. 1).

Per-example gradients come from ``torch.func.vmap(grad(...))`` and are materialised as one flat
vector per example, which is fine for small models.  The influence engine
(``defenses.influence.engine``) is the fast path; this module is the simple, obviously-correct
version the foundation needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from benchmark.training.losses import per_example_loss
from defenses.base import Defense, Evidence

MIN_NORM = 1e-8


def flat_per_example_grads(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                           chunk: int = 256) -> torch.Tensor:
    """``(N, P)`` per-example loss gradients at the model's current parameters (eval mode)."""
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss_one(p, x, y):
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return per_example_loss(out, y.unsqueeze(0)).sum()

    g_fn = vmap(grad(loss_one), in_dims=(None, 0, 0))
    rows = []
    for i in range(0, len(labels), chunk):
        g = g_fn(params, inputs[i : i + chunk], labels[i : i + chunk])
        rows.append(torch.cat([g[k].reshape(len(g[k]), -1) for k in params], dim=1))
    return torch.cat(rows)


def tracincp_scores(model_factory: Callable[[], nn.Module], run, train_x: torch.Tensor,
                    train_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor,
                    renormalize: bool) -> torch.Tensor:
    """``(n_train, n_queries)`` TracInCP (Eq. 5) or, with ``renormalize``, GAS (Eq. 12)."""
    scores = torch.zeros(len(train_y), len(query_y), dtype=torch.float64)
    for ckpt in run.checkpoints:
        model = model_factory()
        model.load_state_dict(ckpt.params)
        g_tr = flat_per_example_grads(model, train_x, train_y)
        g_te = flat_per_example_grads(model, query_x, query_y)
        dots = (g_tr @ g_te.T).double()
        live = (g_te != 0).any(dim=1).double()  # zero test gradient: checkpoint skipped
        if renormalize:
            dots = dots / g_tr.norm(dim=1).clamp_min(MIN_NORM).double()[:, None]
            dots = dots / g_te.norm(dim=1).clamp_min(MIN_NORM).double()[None, :]
        scores += (ckpt.lr / ckpt.batch_size) * dots * live[None, :]
    return scores


@dataclass
class _NoParams:
    pass


class SimpleTracInCP(Defense):
    """TracInCP (paper 000 Eq. 5), straightforward batched implementation."""

    Config = _NoParams
    requires = frozenset({"checkpoints", "queries"})
    renormalize = False

    def score(self, evidence: Evidence) -> np.ndarray:
        qx, qy = evidence.queries()
        run = evidence.run()
        return tracincp_scores(evidence.model_factory, run, evidence.train_inputs,
                               evidence.train_labels, qx, qy, self.renormalize).numpy()


class SimpleGAS(SimpleTracInCP):
    """GAS = renormalized TracInCP (paper 000 Eq. 12), straightforward batched implementation."""

    renormalize = True
