"""Q_n speed (run with `pytest tests/benchmarks/test_bench_qn.py --benchmark-only -s`).

Both checks are ratios measured in the same run, so they hold on any machine:
* >= 3x faster than statsmodels' qn_scale at n = 20,000;
* time(n = 1e6) / time(n = 1e5) <= 15 (O(n log n); an O(n^2) method would give ~100).
The ratios use the best of several runs in *thread CPU time* (everything here is
single-threaded NumPy), which other processes on a shared machine barely disturb;
pytest-benchmark records the usual wall-clock statistics alongside.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark.robust_scale import qn_scale


def best_cpu_time(fn, x, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.thread_time()
        fn(x)
        best = min(best, time.thread_time() - t)
    return best


def test_qn_faster_than_statsmodels_at_20k(benchmark):
    sm = pytest.importorskip("statsmodels.robust.scale")
    x = np.random.default_rng(0).normal(size=20_000)
    assert qn_scale(x) == pytest.approx(sm.qn_scale(x), rel=1e-14)
    benchmark.pedantic(qn_scale, args=(x,), rounds=10, iterations=1, warmup_rounds=1)
    ours = best_cpu_time(qn_scale, x, 15)
    theirs = best_cpu_time(sm.qn_scale, x, 15)
    ratio = theirs / ours
    benchmark.extra_info.update(ours_cpu_s=ours, statsmodels_cpu_s=theirs, speedup=ratio)
    print(f"\nQ_n n=20,000 (CPU time): ours {ours * 1e3:.2f} ms, statsmodels {theirs * 1e3:.2f} ms, "
          f"speed-up {ratio:.1f}x")
    assert ratio >= 3.0


def test_qn_scaling_1e5_to_1e6(benchmark):
    rng = np.random.default_rng(1)
    x5 = rng.normal(size=100_000)
    x6 = rng.normal(size=1_000_000)
    benchmark.pedantic(qn_scale, args=(x6,), rounds=3, iterations=1, warmup_rounds=1)
    t5 = best_cpu_time(qn_scale, x5, 10)
    t6 = best_cpu_time(qn_scale, x6, 3)
    ratio = t6 / t5
    benchmark.extra_info.update(t_1e5_cpu_s=t5, t_1e6_cpu_s=t6, ratio=ratio)
    print(f"\nQ_n (CPU time): n=1e5 {t5 * 1e3:.1f} ms, n=1e6 {t6 * 1e3:.1f} ms, ratio {ratio:.1f}")
    assert ratio <= 15.0
