"""Why does the influence graph (paper 001) miss the poisons of a trial?  A diagnosis, not a method.

For one trial of a paper-001 experiment (its training from the cache, or trained here) this
computes the Greedy defender's own edge weights -- Eq. 4's pairwise influence over the suite's
Hessian scope, symmetrised by Eq. 7 -- and separates the three explanations the brief asks for:

1. **a bug** -- a block of the matrix (poisons and clean examples) against a float64 brute force
   built independently of the engine: the model cast to float64, the scope's Hessian by
   ``torch.autograd.functional.hessian`` of the mean training loss, Eq. 4 by a dense solve;
2. **the search** -- Eq. 9's objective (average edge weight) of the true poison set against the
   set Greedy (Alg. 1) and Agglomerate (Alg. 2) return: if the poison set scores higher, the
   search fails; if lower, the objective itself does not single the poisons out;
3. **the victim** -- how well the model fits its training data (gold-label probability, training
   accuracy) for poisons and clean examples, the gradient norms Eq. 4 multiplies, and who the
   selected nodes are; and, as a counterfactual on the same matrix, the objective with each
   example's gradient magnitudes divided out (cosine form, the renormalisation of paper 000;
   a diagnostic only -- no reported method uses it).

    python -m benchmark.tools.diagnose_influence_graph --experiment t1-001-pixel-eps10-airplane-bird \\
        --scale small --trial 0 --output results/paper/diagnostics/001-influence-graph-small.json

Everything is written to the JSON with the command that produced it (machine paths as
``"$BENCHMARK_DATA_ROOT"`` / ``"$BENCHMARK_CACHE_DIR"``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from benchmark.data.types import resolve_cache_dir, resolve_data_root
from benchmark.experiment import deep_merge
from benchmark.methods import build_method
from benchmark.protocols.common import make_evidence
from benchmark.rng import numpy_rng
from benchmark.runner import get_suite
from benchmark.tools import commands
from benchmark.trial import PreparedTrial, prepare_trial

TOOL = "python -m benchmark.tools.diagnose_influence_graph"

#: Brute-force block: this many poisons and this many clean examples (ours).
N_CHECK = 6


def _method(exp, label: str):
    """The experiment's own method instance (its config as the suite resolves it)."""
    return build_method(next(m for m in exp.methods if m.label == label))


def _edge_average(S: np.ndarray, idx: np.ndarray) -> float:
    """Eq. 9's objective: the mean weight over the edges inside ``idx``."""
    idx = np.asarray(idx)
    block = S[np.ix_(idx, idx)]
    k = len(idx)
    return float((block.sum() - np.trace(block)) / (k * (k - 1)))


@torch.no_grad()
def _fit(p: PreparedTrial, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Gold-label probability and correctness of the final model on ``(x, y)``."""
    model = p.model_factory()
    model.load_state_dict(p.run.final)
    model.eval()
    probs = torch.cat([torch.softmax(model(x[i:i + 512]), dim=1) for i in range(0, len(x), 512)])
    gold = probs[torch.arange(len(y)), y]
    return gold.numpy().astype(np.float64), (probs.argmax(1) == y).numpy()


def _features64(p: PreparedTrial, x: torch.Tensor) -> tuple[torch.Tensor, torch.nn.Linear]:
    """The classifier's inputs and the classifier, both in float64 (the model cast to float64)."""
    model = p.model_factory().double()
    model.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in p.run.final.items()})
    model.eval()
    feats = []
    hook = model.classifier.register_forward_hook(lambda _m, inp, _o: feats.append(inp[0].detach()))
    with torch.no_grad():
        for i in range(0, len(x), 512):
            model(x[i:i + 512].double())
    hook.remove()
    return torch.cat(feats), model.classifier


def brute_force_block(p: PreparedTrial, rows: np.ndarray, cols: np.ndarray, damping: float,
                      head: tuple[torch.Tensor, torch.nn.Linear] | None = None) -> np.ndarray:
    """Float64 Eq. 4 over the ``classifier`` layer for ``rows x cols``, without the engine:
    ``-grad F_{y_j}(z_j)^T (H + damping I)^-1 grad L(z_i)``, H the Hessian of the mean training
    loss w.r.t. the classifier's weight and bias (in the model's parameter order)."""
    phi, clf = head if head is not None else _features64(p, p.train.inputs)
    y = p.train.labels
    w0, b0 = clf.weight.detach().clone(), clf.bias.detach().clone()
    shapes = [w0.shape, b0.shape]
    theta0 = torch.cat([w0.reshape(-1), b0.reshape(-1)])

    def unflat(t):
        w = t[: w0.numel()].reshape(shapes[0])
        return w, t[w0.numel():].reshape(shapes[1])

    def mean_loss(t):
        w, b = unflat(t)
        return torch.nn.functional.cross_entropy(phi @ w.T + b, y)

    H = torch.autograd.functional.hessian(mean_loss, theta0)
    H = H + damping * torch.eye(len(theta0), dtype=H.dtype)

    def grad_of(fn, i):
        t = theta0.clone().requires_grad_(True)
        w, b = unflat(t)
        out = fn(phi[i:i + 1] @ w.T + b, int(y[i]))
        (g,) = torch.autograd.grad(out, t)
        return g

    gl = torch.stack([grad_of(lambda z, c: torch.nn.functional.cross_entropy(z, torch.tensor([c])), i) for i in rows])
    gf = torch.stack([grad_of(lambda z, c: torch.softmax(z, 1)[0, c], j) for j in cols])
    sol = torch.linalg.solve(H, gl.T)  # (P, rows)
    return (-(gf @ sol).T).numpy()


def per_example_grad_norms(p: PreparedTrial,
                           head: tuple[torch.Tensor, torch.nn.Linear] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form classifier-layer gradient norms (float64): ``|grad L|`` and ``|grad F_y|``.
    For a linear layer ``z = W phi + b``: ``grad_W = delta phi^T``, ``grad_b = delta``, so the norm
    is ``|delta| sqrt(|phi|^2 + 1)`` with ``delta = softmax - onehot`` (loss) or
    ``p_y (onehot - softmax)`` (gold probability)."""
    phi, clf = head if head is not None else _features64(p, p.train.inputs)
    with torch.no_grad():
        probs = torch.softmax(clf(phi), 1)
    onehot = torch.nn.functional.one_hot(p.train.labels, probs.shape[1]).double()
    scale = torch.sqrt((phi ** 2).sum(1) + 1)
    d_loss = (probs - onehot).norm(dim=1)
    p_gold = (probs * onehot).sum(1)
    d_f = (p_gold[:, None] * (onehot - probs)).norm(dim=1)
    return (d_loss * scale).numpy(), (d_f * scale).numpy()


def all_parameter_grad_norms(p: PreparedTrial, idx: np.ndarray) -> np.ndarray:
    """``|grad L|`` over *every* parameter (eval mode) for the examples ``idx``: the scope
    question -- every layer's gradient factors through ``softmax - onehot``, so a wider Hessian
    scope cannot undo a magnitude gap between poisons and clean examples; measured, not assumed."""
    model = p.model_factory()
    model.load_state_dict(p.run.final)
    model.eval()
    params = [q for q in model.parameters() if q.requires_grad]
    out = []
    for i in idx:
        loss = torch.nn.functional.cross_entropy(model(p.train.inputs[i:i + 1]), p.train.labels[i:i + 1])
        grads = torch.autograd.grad(loss, params)
        out.append(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))))
    return np.asarray(out)


def _summary(v: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(v)), "q10": float(np.quantile(v, 0.1)), "q90": float(np.quantile(v, 0.9)),
            "mean": float(np.mean(v))}


def diagnose(p: PreparedTrial, exp, log=print) -> dict[str, Any]:
    greedy_method = _method(exp, "Greedy")
    layers, damping = greedy_method.config.layers, float(greedy_method.config.damping)
    ev = make_evidence(p, greedy_method.requires, numpy_rng(p.tc.seed, "diagnose"))
    k = int(ev.budget())
    is_adv = p.attacked.is_adv.numpy().astype(bool)
    poisons, clean = np.flatnonzero(is_adv), np.flatnonzero(~is_adv)
    n = len(is_adv)
    t0 = time.perf_counter()
    I = np.asarray(greedy_method.edge_weights(ev))  # the defender's own Eq. 4 matrix
    agglo_method = _method(exp, "Agglomerate")
    t_matrix = time.perf_counter() - t0
    log(f"pairwise influence {n} x {n}: {t_matrix:.0f} s")
    S = greedy_method.symmetrized(I)

    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(poisons, N_CHECK, replace=False), rng.choice(clean, N_CHECK, replace=False)])
    head = _features64(p, p.train.inputs)  # once, for the brute force and the gradient norms
    bf = brute_force_block(p, rows, rows, damping, head)
    ours = I[np.ix_(rows, rows)].astype(np.float64)
    check = {"pairs": int(bf.size), "max_abs_error": float(np.abs(ours - bf).max()),
             "max_relative_error": float(np.abs(ours - bf).max() / np.abs(bf).max()),
             "block_max_abs": float(np.abs(bf).max())}
    log(f"brute force: {check}")

    greedy = greedy_method.run_search(S, k)
    agglo = agglo_method.run_search(S, k)
    sel_g, sel_a = np.asarray(greedy.selected), np.asarray(agglo.selected)
    random_sets = [rng.choice(n, k, replace=False) for _ in range(20)]
    objective = {
        "k": k,
        "poison_set": _edge_average(S, poisons[:k] if len(poisons) >= k else poisons),
        "greedy_set": _edge_average(S, sel_g),
        "agglomerative_set": _edge_average(S, sel_a),
        "random_sets_mean": float(np.mean([_edge_average(S, r) for r in random_sets])),
        "poison_clean_edges_mean": float(S[np.ix_(poisons, clean)].mean()),
        "clean_clean_edges_mean": _edge_average(S, rng.choice(clean, min(len(clean), 2000), replace=False)),
    }
    log(f"objective: {objective}")

    gold, correct = _fit(p, p.train.inputs, p.train.labels)
    g_loss, g_f = per_example_grad_norms(p, head)
    labels = p.train.labels.numpy()
    y_adv = int(np.bincount(labels[poisons]).argmax())
    sample_p = rng.choice(poisons, min(64, len(poisons)), replace=False)
    sample_c = rng.choice(clean, 64, replace=False)
    victim = {
        "grad_loss_norm_all_params_poisons_64": _summary(all_parameter_grad_norms(p, sample_p)),
        "grad_loss_norm_all_params_clean_64": _summary(all_parameter_grad_norms(p, sample_c)),
        "train_accuracy_clean": float(correct[clean].mean()), "train_accuracy_poisons": float(correct[poisons].mean()),
        "gold_prob_clean": _summary(gold[clean]), "gold_prob_poisons": _summary(gold[poisons]),
        "grad_loss_norm_clean": _summary(g_loss[clean]), "grad_loss_norm_poisons": _summary(g_loss[poisons]),
        "grad_gold_prob_norm_clean": _summary(g_f[clean]), "grad_gold_prob_norm_poisons": _summary(g_f[poisons]),
    }
    log(f"victim: {victim}")

    def who(sel: np.ndarray) -> dict[str, Any]:
        return {"poison_fraction": float(is_adv[sel].mean()),
                "train_accuracy": float(correct[sel].mean()),
                "gold_prob_median": float(np.median(gold[sel])),
                "grad_loss_norm_median": float(np.median(g_loss[sel])),
                "share_labelled_y_adv": float((labels[sel] == y_adv).mean()),
                "label_counts": {int(c): int(m) for c, m in zip(*np.unique(labels[sel], return_counts=True))}}

    selected = {"greedy": who(sel_g), "agglomerative": who(sel_a),
                "greedy_agglomerative_overlap": float(len(np.intersect1d(sel_g, sel_a)) / k)}
    log(f"selected: {selected}")

    # counterfactual on the same matrix: each edge divided by the two examples' gradient norms
    # (|grad L(z_i)| |grad F(z_j)|, per direction) -- paper 000's renormalisation, diagnostic only
    In = I.astype(np.float64) / np.outer(g_loss, g_f)
    Sn = greedy_method.symmetrized(In)
    gn = greedy_method.run_search(Sn, k)
    cosine = {"poison_set": _edge_average(Sn, poisons[:k]), "greedy_set": _edge_average(Sn, np.asarray(gn.selected)),
              "greedy_poison_fraction": float(is_adv[np.asarray(gn.selected)].mean())}
    log(f"cosine-form counterfactual: {cosine}")
    return {"experiment": exp.name, "trial": p.tc.trial, "n_train": n, "n_poisons": int(len(poisons)),
            "layers": list(layers) if not isinstance(layers, str) else layers, "damping": damping,
            "matrix_seconds": t_matrix, "brute_force_check": check, "objective_eq9": objective,
            "victim_fit": victim, "selected": selected, "cosine_counterfactual": cosine}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="paper")
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--trial", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--victim-override", type=json.loads, default=None, metavar="JSON",
                    help='merged into the scale\'s config, e.g. \'{"train": {"epochs": 40}}\' (a diagnostic '
                         'victim: tests whether the verdict depends on how well the model fits D_tr)')
    a = ap.parse_args(argv)
    suite = get_suite(a.suite)
    exp = next((e for e in suite.experiments if e.name == a.experiment), None)
    if exp is None:
        ap.error(f"suite {a.suite!r} has no experiment {a.experiment!r}")
    if a.victim_override:
        exp = replace(exp, scales={**exp.scales, a.scale: deep_merge(exp.scales.get(a.scale, {}), a.victim_override)})
    tc = exp.resolve(a.scale, a.trial, suite.seed)
    t0 = time.perf_counter()
    p = prepare_trial(tc, resolve_data_root(a.data_root), resolve_cache_dir(a.cache_dir))
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    log(f"trial prepared ({time.perf_counter() - t0:.0f} s)")
    out = {"command": commands.command_line(TOOL, argv if argv is not None else sys.argv[1:]),
           "trial_hash": tc.hash, "victim_override": a.victim_override, "train": tc.values["train"], **diagnose(p, exp, log)}
    text = json.dumps(out, indent=1, sort_keys=True)
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
