"""Shared passes (issue 14 item 8): the cost of Fig. 1's estimators on one trial, relative to GAS.

Run:  python -m pytest tests/benchmarks/test_bench_shared_passes.py --benchmark-only -s
(the project's pytest config skips benchmarks otherwise: ``addopts = --benchmark-skip``).

Workload (ours, trial-sized): ``small-cnn`` of width 4 (369 parameters, conv + BN + linear) on
320 training images of the embedded 8x8 digits (classes 6 and 9, the quick toy's pair, a
one-logit binary model), trained with the benchmark trainer for 2 epochs (batch 32, Adam,
one-cycle, 5 checkpoints per epoch: 10 checkpoints), 1 query (a held-out image labelled by the
final model), ``torch.set_num_threads(1)``.  The methods are those of
``benchmark.suites.quick.ESTIMATORS`` with their suite parameters (IF over all parameters, exact
solver), each given its own :class:`Evidence` as a protocol does, all with the trial's memo.

Contestants (each a sum of CPU times of ``Defense.score`` calls, in a fresh process with
``OMP_WAIT_POLICY=PASSIVE``; the cheap ones alternate over several rounds, best round each):

* ``gas``: GAS alone, no memo -- the denominator;
* ``fig1``: every estimator through one fresh memo, as a trial runs them today (no hint), once
  (it builds IF's exact Hessian);
* ``fig1_passes``: the same with IF's exact damped inverse Hessian already in the memo:
  everything except the Hessian's construction, i.e. what the shared passes govern;
* ``fig1_passes_hint``: ``fig1_passes`` with the trial's hint naming all six TracIn-family
  terms (``extras["influence_terms"]``): one pass over the checkpoints for the six;
* ``fig1_passes_unshared``: ``fig1_passes`` with one memo per method holding only the Hessian:
  every method makes its own pass (the cost before shared passes, Hessian excluded).

It also checks that every shared score equals the method's own (memo-less; IF: its own pass).

Checks (ratios measured in one run): ``fig1_passes / gas <= 2.0``, the shared passes' target.
The whole trial, ``fig1 / gas``, is reported beside it; its goal ``<= 2.0`` is checked by a
test expected to fail: the exact Hessian over all parameters costs one Hessian-vector product
per parameter (``SubsetObjective.hessian``), far more than GAS's 10 checkpoint passes, whatever
the passes share.
"""
from __future__ import annotations

import time

from _child import in_child

import numpy as np
import pytest
import torch

CLASSES, N_TRAIN, WIDTH, EPOCHS, CKPT_PER_EPOCH, BATCH = (6, 9), 320, 4, 2, 5, 32  # ours
ROUNDS = 5  # ours: rounds of the cheap contestants, alternating; best round each
ALL_SIX = [("dot", False), ("cosine", False), ("layerwise_cosine", False),
           ("dot", True), ("cosine", True), ("layerwise_cosine", True)]

pytest.importorskip("sklearn", reason="the embedded digits come from scikit-learn")


def make_trial() -> dict:
    """The pinned workload: data, trained run, query, and an Evidence builder."""
    from sklearn.datasets import load_digits

    from benchmark.api import Evidence
    from benchmark.models.small_cnn import small_cnn
    from benchmark.training.losses import num_outputs, predict
    from benchmark.training.trainer import TrainConfig, train

    torch.set_num_threads(1)
    d = load_digits()
    keep = np.flatnonzero(np.isin(d.target, CLASSES))
    images = torch.tensor(d.images[keep], dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor((d.target[keep] == CLASSES[1]).astype(np.int64))
    x, y = images[:N_TRAIN].contiguous(), labels[:N_TRAIN].contiguous()
    qx = images[N_TRAIN : N_TRAIN + 1].contiguous()
    outs = num_outputs(2)
    torch.manual_seed(0)
    init = small_cnn((1, 8, 8), outs, width=WIDTH).state_dict()

    def factory():
        model = small_cnn((1, 8, 8), outs, width=WIDTH)
        model.load_state_dict(init)
        return model

    cfg = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=1e-2, checkpoints_per_epoch=CKPT_PER_EPOCH)
    run = train(factory(), x, y, cfg, torch.Generator().manual_seed(0))
    final = factory()
    final.load_state_dict(run.final)
    with torch.no_grad():
        qy = predict(final.eval()(qx))

    def evidence(method, memo: dict | None, hint=None) -> Evidence:
        extras = {} if memo is None else {"influence_memo": memo}
        if hint is not None:
            extras["influence_terms"] = hint
        return Evidence(train_inputs=x, train_labels=y, num_classes=2, rng=np.random.default_rng(0),
                        granted=frozenset(method.requires), model_factory=factory,
                        final_params=run.final, training_run=run, train_config=run.config,
                        query_inputs=qx, query_labels=qy, extras=extras)

    return {"evidence": evidence, "n_params": sum(p.numel() for p in factory().parameters()),
            "n_checkpoints": len(run.checkpoints)}


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def fig1_costs() -> dict:
    """Child: CPU seconds of every contestant, the per-method split of ``fig1`` and
    ``fig1_passes``, and whether the shared scores equal the memo-less ones."""
    from benchmark.methods import build_method
    from benchmark.suites.quick import ESTIMATORS

    import defenses  # noqa: F401  (registers the estimators)

    w = make_trial()
    ev = w["evidence"]
    methods = [(spec.name, build_method(spec)) for spec in ESTIMATORS]
    gas = build_method(next(spec for spec in ESTIMATORS if spec.name == "gas"))

    def trial(memo_for, hint=None) -> dict[str, float]:
        return {name: _cpu(lambda m=m: m.score(ev(m, memo_for(), hint))) for name, m in methods}

    _cpu(lambda: gas.score(ev(gas, None)))  # warm-up (kernel selection, allocator)
    memo: dict = {}
    fig1 = trial(lambda: memo)  # once: it builds IF's exact Hessian
    hessian = {k: v for k, v in memo.items() if k[0] == "if-exact-preconditioner"}
    # shared scores == each method alone (IF alone: its own pass, with the Hessian already built)
    same = all(np.array_equal(m.score(ev(m, memo)),
                              m.score(ev(m, dict(hessian) if name.startswith("if") else None)))
               for name, m in methods)
    best = {k: float("inf") for k in ("gas", "fig1_passes", "fig1_passes_hint", "fig1_passes_unshared")}
    split = {}
    for _ in range(ROUNDS):
        best["gas"] = min(best["gas"], _cpu(lambda: gas.score(ev(gas, None))))
        shared = dict(hessian)
        per = trial(lambda: shared)
        if sum(per.values()) < best["fig1_passes"]:
            best["fig1_passes"], split = sum(per.values()), per
        shared_hint = dict(hessian)
        best["fig1_passes_hint"] = min(best["fig1_passes_hint"],
                                       sum(trial(lambda: shared_hint, ALL_SIX).values()))
        best["fig1_passes_unshared"] = min(best["fig1_passes_unshared"],
                                           sum(trial(lambda: dict(hessian)).values()))
    return {**best, "fig1": sum(fig1.values()), "fig1_split": fig1, "fig1_passes_split": split,
            "memo_equals_memoless": same, "n_params": w["n_params"], "n_checkpoints": w["n_checkpoints"]}


def _in_child(benchmark, fn: str) -> dict:
    """``fn()`` of this module in a fresh process (:func:`_child.in_child`), one thread."""
    return in_child(benchmark, "test_bench_shared_passes", fn, env={"OMP_NUM_THREADS": "1"})


_CACHE: dict = {}


def _costs(benchmark) -> dict:
    """One child per session: both tests read the same measurement."""
    if "costs" not in _CACHE:
        _CACHE["costs"] = _in_child(benchmark, "fig1_costs")
    else:
        benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    c = _CACHE["costs"]
    ratios = {f"{k}_over_gas": c[k] / c["gas"] for k in
              ("fig1", "fig1_passes", "fig1_passes_hint", "fig1_passes_unshared")}
    benchmark.extra_info.update({k: v for k, v in c.items() if not isinstance(v, dict)})
    benchmark.extra_info.update(ratios)
    return {**c, **ratios}


def test_bench_fig1_shared_passes(benchmark):
    c = _costs(benchmark)
    print(f"\n{c['n_params']} parameters, {c['n_checkpoints']} checkpoints; CPU s: "
          + ", ".join(f"{k} {c[k]:.3f}" for k in ("gas", "fig1_passes", "fig1_passes_hint",
                                                  "fig1_passes_unshared", "fig1"))
          + f"\nratios to GAS: passes {c['fig1_passes_over_gas']:.2f} (goal <= 2.0), with the hint "
          f"{c['fig1_passes_hint_over_gas']:.2f}, unshared {c['fig1_passes_unshared_over_gas']:.2f}, "
          f"whole trial with IF's Hessian {c['fig1_over_gas']:.1f}"
          + "\nper method (passes): " + ", ".join(f"{k} {v:.3f}" for k, v in c["fig1_passes_split"].items())
          + "\nper method (whole):  " + ", ".join(f"{k} {v:.3f}" for k, v in c["fig1_split"].items()))
    assert c["memo_equals_memoless"]
    assert c["fig1_passes_over_gas"] <= 2.0


@pytest.mark.xfail(reason="IF's exact Hessian over all parameters (one HVP per parameter) dominates the "
                          "trial; the shared passes do not touch it", strict=False)
def test_bench_fig1_whole_trial(benchmark):
    c = _costs(benchmark)
    print(f"\nwhole trial (IF's exact Hessian included) / GAS: {c['fig1_over_gas']:.1f}")
    assert c["fig1_over_gas"] <= 2.0
