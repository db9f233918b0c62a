"""Cost of paper 001's pairwise influence (Eq. 4, :func:`defenses.influence.pairwise.
pairwise_influence`) relative to one per-example-gradient pass, and its peak memory.

Run:  python -m pytest tests/benchmarks/test_bench_pairwise.py --benchmark-only -s
(the project's pytest config skips benchmarks otherwise: ``addopts = --benchmark-skip``).

Workload (ours): ``mlp`` of width 64 (4,810 parameters) on N = 2,000 synthetic 64-dimensional
inputs of 10 classes (Gaussian class means, seed 0), trained for 2 epochs with the benchmark
trainer; ``torch.set_num_threads(1)``.  The training set is its own query set: an N x N matrix.

* floors: one per-example-gradient pass over the N examples -- the engine's gradient map
  (hooked forward + backward, batch 128) and every layer's per-example gradient materialised --
  and that pass plus the ``N x N`` Gram of the materialised gradients over all parameters (one
  float32 GEMM: the floor of any training x training gradient-similarity matrix);
* contestants (each in a fresh process, ``OMP_WAIT_POLICY=PASSIVE``): Eq. 4 with the exact
  damped Hessian over the classifier (650 parameters), and with EK-FAC over all parameters,
  true Fisher (exact expectation: one gradient pass per class while fitting) and empirical
  Fisher.  Each: CPU time of one call after a warm-up call; the floor: best of 3.

Reported: both ratios (CPU time) and the peak RSS of each process (about 1 GB of it is the
interpreter, torch and the trainer's imports, before any scoring).  Eq. 4's matrix costs
``N^2 P`` multiply-adds against the pass's ``N P``: the ratio to the pass grows with ``N`` and
is not bounded; the checks are loose bounds on the ratio to the Gram floor (the exact solver
scores 650 parameters, i.e. less than the floor's GEMM, but builds its Hessian from 650
Hessian-vector products; EK-FAC fits with 2 passes, 2 x 10 for the true Fisher), so they hold
on a busy machine.
"""
from __future__ import annotations

import resource
import time

from _child import in_child

import numpy as np
import torch

from benchmark.models import build_model
from benchmark.training.trainer import TrainConfig, train
from defenses.influence.engine import EngineOptions, GradientMap, materialise
from defenses.influence.kfac import KFACConfig
from defenses.influence.pairwise import pairwise_influence

N, D_IN, CLASSES, HIDDEN, BATCH = 2000, 64, 10, 64, 128  # ours
CONTESTANTS = {
    "exact_classifier": dict(layers=["classifier"], preconditioner="exact", damping=0.01),
    "ekfac_true": dict(layers="all", preconditioner="ekfac", damping=0.01, kfac=KFACConfig(fisher="true")),
    "ekfac_empirical": dict(layers="all", preconditioner="ekfac", damping=0.01,
                            kfac=KFACConfig(fisher="empirical")),
}


def workload():
    """Data, model factory and trained parameters (deterministic)."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    means = 2 * torch.randn(CLASSES, D_IN, generator=g)
    y = torch.randint(0, CLASSES, (N,), generator=g)
    x = means[y] + 3 * torch.randn(N, D_IN, generator=g)
    torch.manual_seed(0)
    init = build_model("mlp", (D_IN,), CLASSES, {"hidden": HIDDEN}).state_dict()

    def factory():
        m = build_model("mlp", (D_IN,), CLASSES, {"hidden": HIDDEN})
        m.load_state_dict(init)
        return m

    run = train(factory(), x, y, TrainConfig(epochs=2, batch_size=64, lr=1e-2, checkpoints_per_epoch=1),
                torch.Generator().manual_seed(0))
    return factory, run.final, x, y


def gradient_pass(factory, params, x, y, gram: bool = False, layers=None) -> None:
    """The floor: every example's materialised loss gradient (over ``layers``; ``None`` = all),
    batch by batch; ``gram``: kept, then their ``N x N`` Gram (one float32 GEMM) -- the floor of
    any gradient-similarity matrix."""
    model = factory()
    model.load_state_dict(params)
    bound = GradientMap("loss").bind(model, layers)
    opts = EngineOptions()
    rows = []
    for b0 in range(0, len(y), BATCH):
        feats = bound(x[b0 : b0 + BATCH], y[b0 : b0 + BATCH])
        parts = [materialise(f, opts) for f in feats.values()]
        if gram:
            rows.append(torch.cat(parts, 1))
    if gram:
        g = torch.cat(rows)
        g @ g.T


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def measure(name: str) -> dict:
    """Child: CPU seconds of the floor (best of 3) and of contestant ``name`` (after a warm-up
    call), and this process's peak RSS."""
    factory, params, x, y = workload()
    kw = CONTESTANTS[name]
    floor = min(_cpu(lambda: gradient_pass(factory, params, x, y)) for _ in range(3))
    gram = min(_cpu(lambda: gradient_pass(factory, params, x, y, gram=True)) for _ in range(3))
    pairwise_influence(factory, params, x, y, **kw)  # warm-up
    wall = time.perf_counter()
    cost = _cpu(lambda: pairwise_influence(factory, params, x, y, **kw))
    wall = time.perf_counter() - wall
    s = pairwise_influence(factory, params, x, y, **kw)
    return {"floor_cpu_s": floor, "gram_floor_cpu_s": gram, "cpu_s": cost, "wall_s": wall,
            "ratio": cost / floor, "ratio_to_gram": cost / gram,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "finite": bool(np.isfinite(s).all()), "dtype": str(s.dtype), "n_params":
            sum(p.numel() for p in factory().parameters())}


def _run(benchmark, name: str) -> dict:
    info = in_child(benchmark, "test_bench_pairwise", "measure", name, env={"OMP_NUM_THREADS": "1"})
    benchmark.extra_info.update(info)
    print(f"\n{name}: N={N}, {info['n_params']} parameters; floors: gradient pass {info['floor_cpu_s']:.3f} s, "
          f"+ N x N Gram {info['gram_floor_cpu_s']:.3f} s CPU; pairwise {info['cpu_s']:.3f} s CPU "
          f"({info['wall_s']:.3f} s wall): {info['ratio']:.0f} x the pass, {info['ratio_to_gram']:.1f} x the "
          f"Gram floor; peak RSS {info['peak_rss_mb']:.0f} MB, output {info['dtype']}")
    assert info["finite"] and info["dtype"] == "float32"
    return info


def test_bench_pairwise_exact_classifier(benchmark):
    assert _run(benchmark, "exact_classifier")["ratio_to_gram"] <= 5


def test_bench_pairwise_ekfac_true_fisher(benchmark):
    assert _run(benchmark, "ekfac_true")["ratio_to_gram"] <= 10


def test_bench_pairwise_ekfac_empirical_fisher(benchmark):
    assert _run(benchmark, "ekfac_empirical")["ratio_to_gram"] <= 6


#: Issue 9: the matrix at N = 10,000 on the ``small`` victim of paper 001's Table 1 (ResNet-8 of
#: width 16, the trial-0 model of this experiment), the Greedy defender's own setting.
SMALL_EXPERIMENT = "t1-001-pixel-eps10-airplane-bird"


def measure_small_victim() -> dict:
    """Child: the small victim's training from the cache (or trained here: minutes), then CPU
    seconds of one per-example-gradient pass over its N = 10,000 training examples (the
    classifier's gradients: the Greedy defender's scope, through the full forward and backward)
    and of the defender's Eq. 4 matrix (one call: at this size a warm-up would cost minutes)."""
    import os
    from pathlib import Path

    from benchmark.methods import build_method
    from benchmark.protocols.common import make_evidence
    from benchmark.rng import numpy_rng
    from benchmark.runner import get_suite
    from benchmark.trial import prepare_trial

    torch.set_num_threads(1)
    suite = get_suite("paper")
    exp = next(e for e in suite.experiments if e.name == SMALL_EXPERIMENT)
    p = prepare_trial(exp.resolve("small", 0, suite.seed), Path(os.environ["BENCHMARK_DATA_ROOT"]),
                      Path(os.environ["BENCHMARK_CACHE_DIR"]))
    method = build_method(next(m for m in exp.methods if m.label == "Greedy"))
    x, y = p.train.inputs, p.train.labels

    floor = min(_cpu(lambda: gradient_pass(p.model_factory, p.run.final, x, y, layers=list(method.config.layers)))
                for _ in range(2))
    ev = make_evidence(p, method.requires, numpy_rng(0, "bench"))
    before = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
    wall = time.perf_counter()
    t = time.process_time()
    s = method.edge_weights(ev)
    cost, wall = time.process_time() - t, time.perf_counter() - wall
    return {"n": len(y), "floor_cpu_s": floor, "cpu_s": cost, "wall_s": wall, "ratio": cost / floor,
            "rss_before_mb": before, "peak_rss_mb": _rss_mb("VmHWM"),
            "finite": bool(np.isfinite(s).all()), "dtype": str(s.dtype), "shape": list(s.shape)}


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def test_bench_pairwise_small_victim_10k(benchmark):
    import os

    import pytest

    if not (os.environ.get("BENCHMARK_DATA_ROOT") and os.environ.get("BENCHMARK_CACHE_DIR")):
        pytest.skip("needs BENCHMARK_DATA_ROOT (CIFAR-10) and BENCHMARK_CACHE_DIR (the victim's training cache)")
    info = in_child(benchmark, "test_bench_pairwise", "measure_small_victim", env={"OMP_NUM_THREADS": "1"})
    benchmark.extra_info.update(info)
    print(f"\nsmall victim ({SMALL_EXPERIMENT}, trial 0): N={info['n']}; one per-example-gradient pass "
          f"{info['floor_cpu_s']:.1f} s CPU; Eq. 4 matrix {info['cpu_s']:.1f} s CPU ({info['wall_s']:.1f} s wall): "
          f"{info['ratio']:.1f} x the pass; RSS {info['rss_before_mb']:.0f} MB before the matrix (data, model, "
          f"imports), peak {info['peak_rss_mb']:.0f} MB while computing it (+{info['peak_rss_mb'] - info['rss_before_mb']:.0f} MB; "
          f"the float32 output alone is {info['n'] ** 2 * 4 / 2 ** 20:.0f} MB), output {info['dtype']} {info['shape']}")
    assert info["finite"] and info["dtype"] == "float32" and info["shape"] == [info["n"], info["n"]]
