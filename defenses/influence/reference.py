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

from typing import Callable, Sequence

import torch
from torch import nn

from benchmark.training.losses import per_example_loss

MIN_NORM = 1e-8


def per_example_gradients(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype = torch.float64,
    loss_fn: Callable = per_example_loss, names: Sequence[str] | None = None, param_l2: float = 0.0,
) -> list[list[torch.Tensor]]:
    """Gradients of each example's loss, one autograd call per example (model in eval mode).

    ``names`` restricts to those parameters; ``param_l2`` adds ``param_l2 * sum ||p||^2`` to
    every example's objective (the reference GAS loop's weight-decay variant)."""
    model = model.to(dtype).eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if names is not None:
        named = [(n, p) for n, p in named if n in set(names)]
    params = [p for _, p in named]
    grads = []
    for i in range(len(labels)):
        x = inputs[i : i + 1].to(dtype) if inputs.is_floating_point() else inputs[i : i + 1]
        loss = loss_fn(model(x), labels[i : i + 1]).sum()
        if param_l2:
            loss = loss + param_l2 * sum((p * p).sum() for p in params)
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
    method: str | Sequence[str],
    dtype: torch.dtype = torch.float64,
    param_l2: float = 0.0,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Scores ``(n_train, n_queries)`` for ``method`` in
    {"tracincp", "gas", "tracin", "tracin-renorm", "gas-l", "tracin-l", "tracincp-l"}
    (a list of methods gives a dict, sharing the per-example gradients)."""
    methods = [method] if isinstance(method, str) else list(method)
    n, m = len(train_labels), len(query_labels)
    out = {k: torch.zeros(n, m, dtype=torch.float64) for k in methods}
    for ckpt in run.checkpoints:
        model = model_factory()
        model.load_state_dict(ckpt.params)
        g_tr = per_example_gradients(model, train_inputs, train_labels, dtype, param_l2=param_l2)
        g_te = per_example_gradients(model, query_inputs, query_labels, dtype, param_l2=param_l2)
        weight = ckpt.lr / ckpt.batch_size
        for meth in methods:
            per_interval = meth in ("tracin", "tracin-renorm", "tracin-l")
            renorm = meth in ("gas", "tracin-renorm")
            layerwise = meth.endswith("-l")
            if per_interval:
                mult = torch.bincount(ckpt.example_ids, minlength=n).to(torch.float64)
            else:
                mult = torch.ones(n, dtype=torch.float64)
            scores = out[meth]
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
    return out[method] if isinstance(method, str) else out


# ------------------------------------------------------------------------------------------
# Static estimators (float64, literal)
# ------------------------------------------------------------------------------------------
def subset_hessian(model: nn.Module, names: Sequence[str], inputs: torch.Tensor, labels: torch.Tensor,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Hessian of the mean training loss w.r.t. the flattened parameters ``names``
    (``torch.autograd.functional.hessian``; the other parameters fixed)."""
    model = model.to(dtype).eval()
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [p.numel() for p in (params[n] for n in names)]
    w0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    x = inputs.to(dtype) if inputs.is_floating_point() else inputs

    def risk(w: torch.Tensor) -> torch.Tensor:
        sub = {n: p.reshape(s) for n, p, s in zip(names, torch.split(w, sizes), shapes)}
        full = {k: (sub[k] if k in sub else v.detach()) for k, v in params.items()}
        out = torch.func.functional_call(model, full, (x,))
        return per_example_loss(out, labels).mean()

    return torch.autograd.functional.hessian(risk, w0)


def static_influence(
    model: nn.Module,
    names: Sequence[str],
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    query_inputs: torch.Tensor,
    query_labels: torch.Tensor,
    damping: float,
    method: str = "if",
    query_fn: Callable = per_example_loss,
    weight: float | None = None,
    dtype: torch.dtype = torch.float64,
    hessian: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(n_train, n_queries)`` influence functions, literally:

    * ``"if"`` (paper 000 Eq. 1): ``weight * q_j^T (H + damping I)^-1 g_i`` (``weight`` = 1/n),
    * ``"if-renorm"`` (Eq. 9): ``g_i / ||g_i||``,
    * ``"if-l"``: each parameter tensor's block of ``g_i`` divided by its own norm,

    where ``q_j`` is the gradient of ``query_fn`` (the loss, or e.g. paper 001 Eq. 4's gold
    score) over the same parameters (``hessian``: a precomputed :func:`subset_hessian`)."""
    n = len(train_labels)
    weight = 1.0 / n if weight is None else weight
    h = subset_hessian(model, names, train_inputs, train_labels, dtype) if hessian is None else hessian
    model = model.to(dtype).eval()
    hinv = torch.linalg.inv(h + damping * torch.eye(len(h), dtype=dtype))
    g_tr = per_example_gradients(model, train_inputs, train_labels, dtype, names=names)
    g_te = per_example_gradients(model, query_inputs, query_labels, dtype, loss_fn=query_fn, names=names)
    scores = torch.zeros(n, len(query_labels), dtype=torch.float64)
    for j in range(len(query_labels)):
        v = hinv @ _flat(g_te[j])
        for i in range(n):
            if method == "if-l":
                parts = [g / max(float(g.norm()), MIN_NORM) for g in g_tr[i]]
                gi = _flat(parts)
            else:
                gi = _flat(g_tr[i])
                if method == "if-renorm":
                    gi = gi / max(float(gi.norm()), MIN_NORM)
            scores[i, j] = weight * float(v @ gi)
    return scores


def representer_point(
    model: nn.Module,
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    query_inputs: torch.Tensor,
    query_labels: torch.Tensor,
    lam: float,
    renorm: bool = False,
    class_index: str = "train_label",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Paper 000 Eq. 2 (Eq. 10 with ``renorm``), one example at a time:
    ``-(1/(2 lam n)) alpha_i <f_i, f_te>``.

    Derived independently of the production code: a one-logit binary head ``a = w.f + b`` is
    rebuilt as an explicit two-class linear head with rows ``(0, w)`` and biases ``(0, b)``, whose
    softmax cross-entropy equals the BCE loss, and ``alpha_i`` is read off autograd as
    ``dL(z_i)/d(logit c)`` of that head with ``c = y_i`` (``"train_label"``, Eq. 2) or
    ``c = y_hat_te`` (``"query_label"``, Yeh et al.).  ``"single_logit"`` is the reference code's
    ``dL/da`` of the one logit."""
    model = model.to(dtype).eval()
    n, m = len(train_labels), len(query_labels)
    head = model.classifier
    if head.out_features == 1:
        weight = torch.cat([torch.zeros_like(head.weight), head.weight]).detach()
        bias = torch.cat([torch.zeros_like(head.bias), head.bias]).detach()
    else:
        weight, bias = head.weight.detach(), head.bias.detach()

    def feats(x):
        x = x.to(dtype) if x.is_floating_point() else x
        return model.features(x).reshape(-1).detach()

    f_te = [feats(query_inputs[j : j + 1]) for j in range(m)]
    scores = torch.zeros(n, m, dtype=torch.float64)
    for i in range(n):
        f_i = feats(train_inputs[i : i + 1])
        if class_index == "single_logit":
            a = head(f_i[None]).detach().requires_grad_(True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(a[:, 0], train_labels[i : i + 1].to(dtype))
        else:
            a = (f_i[None] @ weight.T + bias).detach().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(a, train_labels[i : i + 1].long())
        (d,) = torch.autograd.grad(loss, a)
        d = d[0]
        for j in range(m):
            if class_index == "single_logit":
                alpha = float(d[0])
            else:
                c = int(train_labels[i]) if class_index == "train_label" else int(query_labels[j])
                alpha = float(d[c])
            if renorm:
                alpha = float(torch.sign(torch.tensor(alpha)))
            scores[i, j] = -1.0 / (2 * lam * n) * alpha * float(f_i @ f_te[j])
    return scores


def word_influence(model: nn.Module, names: Sequence[str], inputs: torch.Tensor, labels: torch.Tensor,
                   words: torch.Tensor, damping: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Paper 001 Eqs. 5-6 literally, float64: ``I[i, j] = max_w || J_j v_i ||`` with
    ``v_i = (H + damping I)^-1 grad L(z_i)`` (explicit Hessian over ``names``) and ``J_j`` the
    full Jacobian of ``grad_E F_{y_j}(z_j)`` (word embeddings ``E``) w.r.t. those parameters
    (``torch.autograd.functional.jacobian`` of a double backward).  ``model``: an ``hf-text``-like
    model (``embed``, ``forward_embedded``); ``words``: bool ``(N, L)`` mask of the words."""
    from defenses.influence.engine import gold_prob

    model = model.to(dtype).eval()
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    w0 = torch.cat([params[n].detach().reshape(-1) for n in names])
    h = subset_hessian(model, names, inputs, labels, dtype)
    g = torch.stack([_flat(gi) for gi in per_example_gradients(model, inputs, labels, dtype, names=names)])
    v = torch.linalg.solve(h + damping * torch.eye(len(h), dtype=dtype), g.T).T  # (N, P)
    n = len(labels)
    out = torch.zeros(n, n, dtype=dtype)
    for j in range(n):
        emb, mask = model.embed(inputs[j : j + 1])
        emb = emb.detach()

        def emb_grad(wv: torch.Tensor) -> torch.Tensor:
            sub = {nm: p.reshape(s) for nm, p, s in zip(names, torch.split(wv, sizes), shapes)}
            full = {k: (sub[k] if k in sub else p.detach()) for k, p in params.items()}
            e = emb.clone().requires_grad_(True)
            logits = _embedded_call(model, full, e, mask)
            (ge,) = torch.autograd.grad(gold_prob(logits, labels[j : j + 1]).sum(), e, create_graph=True)
            return ge.reshape(-1)

        jac = torch.autograd.functional.jacobian(emb_grad, w0)  # (L e, P)
        u = (jac @ v.T).T.reshape(n, emb.shape[1], emb.shape[2])  # (N, L, e)
        norms = u.norm(dim=2)
        valid = words[j, : emb.shape[1]]
        out[:, j] = torch.where(valid[None, :], norms, torch.zeros(())).amax(1)
    return out


def _embedded_call(model: nn.Module, params: dict, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``model.forward_embedded(emb, mask)`` with ``params`` substituted (functional call)."""
    class _Embedded(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, e, m):
            return self.inner.forward_embedded(e, m)

    wrapper = _Embedded(model)
    return torch.func.functional_call(wrapper, {f"inner.{k}": v for k, v in params.items()}, (emb, mask))
