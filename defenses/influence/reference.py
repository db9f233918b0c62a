"""Brute-force reference implementations of the dynamic influence estimators (test oracle).

One ``torch.autograd.grad`` call per example, float64 by default, no tricks: this is the
paper's equations written out literally, used to check the fast engine.

* TracInCP, Eq. (5):  sum_t (eta_t / b) <g_i(theta_{t-1}), g_te(theta_{t-1})>
* GAS, Eq. (12):      sum_t (eta_t / b) cos(g_i, g_te)
* TracIn, Eq. (4):    like TracInCP, but example i contributes at checkpoint t only once per
                      occurrence in that interval's batches
* renormalized TracIn, Eq. (11)
* layerwise variants (Sec. 4.4): sum over parameter tensors of the per-tensor cosines

Conventions (paper 000 Sec. 2 and reference code): per-example loss without weight decay, model
in eval mode, the test example uses the final model's predicted label, a checkpoint is skipped
when the test gradient is exactly zero, norms are clamped at ``MIN_NORM``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from benchmark.training.losses import per_example_loss

MIN_NORM = 1e-8


def per_example_gradients(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype = torch.float64,
    loss_fn: Callable = per_example_loss,
) -> list[list[torch.Tensor]]:
    """Gradients of each example's loss, one autograd call per example (model in eval mode)."""
    model = model.to(dtype).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = []
    for i in range(len(labels)):
        x = inputs[i : i + 1].to(dtype) if inputs.is_floating_point() else inputs[i : i + 1]
        loss = loss_fn(model(x), labels[i : i + 1]).sum()
        grads.append([g.detach() for g in torch.autograd.grad(loss, params)])
    return grads


def _flat(gs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in gs])


def dynamic_influence(
    model_factory: Callable[[], nn.Module],
    run,
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    query_inputs: torch.Tensor,
    query_labels: torch.Tensor,
    method: str,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Scores ``(n_train, n_queries)`` for ``method`` in
    {"tracincp", "gas", "tracin", "tracin-renorm", "gas-l", "tracin-l", "tracincp-l"}."""
    per_interval = method in ("tracin", "tracin-renorm", "tracin-l")
    renorm = method in ("gas", "tracin-renorm")
    layerwise = method.endswith("-l")
    n, m = len(train_labels), len(query_labels)
    scores = torch.zeros(n, m, dtype=torch.float64)
    for ckpt in run.checkpoints:
        model = model_factory()
        model.load_state_dict(ckpt.params)
        g_tr = per_example_gradients(model, train_inputs, train_labels, dtype)
        g_te = per_example_gradients(model, query_inputs, query_labels, dtype)
        weight = ckpt.lr / ckpt.batch_size
        if per_interval:
            mult = torch.bincount(ckpt.example_ids, minlength=n).to(torch.float64)
        else:
            mult = torch.ones(n, dtype=torch.float64)
        for j in range(m):
            if all(bool((g == 0).all()) for g in g_te[j]):
                continue  # zero test gradient: checkpoint skipped
            for i in range(n):
                if mult[i] == 0:
                    continue
                if layerwise:
                    val = sum(
                        float((a * b).sum())
                        / (max(float(a.norm()), MIN_NORM) * max(float(b.norm()), MIN_NORM))
                        for a, b in zip(g_tr[i], g_te[j])
                    )
                else:
                    a, b = _flat(g_tr[i]), _flat(g_te[j])
                    val = float(a @ b)
                    if renorm:
                        val /= max(float(a.norm()), MIN_NORM) * max(float(b.norm()), MIN_NORM)
                scores[i, j] += weight * mult[i] * val
    return scores
