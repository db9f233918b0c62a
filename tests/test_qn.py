"""Q_n (paper 000 Eq. 13) against brute-force references: a naive O(n^2) float64 oracle (always
runs), an independent pure-Python two-pointer rank certificate (large n, past statsmodels'
32-bit overflow), and statsmodels' qn_scale where it works (n < 46,341)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

import benchmark.robust_scale as rs
from benchmark.robust_scale import (
    QN_CONSTANT,
    finite_sample_factor,
    kth_pairwise_distance,
    qn_order,
    qn_scale,
)


def naive_kth(x: np.ndarray, k: int) -> float:
    """k-th smallest (1-based) of all |x_i - x_j|, i < j, by materialising every pair."""
    x = np.asarray(x, dtype=np.float64)
    i, j = np.triu_indices(len(x), 1)
    return float(np.sort(np.abs(x[i] - x[j]))[k - 1])


def naive_qn(x: np.ndarray) -> float:
    n = len(x)
    h = n // 2 + 1
    return QN_CONSTANT * naive_kth(x, h * (h - 1) // 2)


def two_pointer_counts(xs_sorted: list[float], q: float) -> tuple[int, int]:
    """(#pairs with |d| < q, #pairs with |d| <= q), pure Python, O(n)."""
    n = len(xs_sorted)
    lt = le = 0
    j_lt = j_le = 0
    for i in range(n):
        j_lt = max(j_lt, i + 1)
        j_le = max(j_le, i + 1)
        while j_lt < n and xs_sorted[j_lt] - xs_sorted[i] < q:
            j_lt += 1
        while j_le < n and xs_sorted[j_le] - xs_sorted[i] <= q:
            j_le += 1
        lt += j_lt - i - 1
        le += j_le - i - 1
    return lt, le


def samples(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    if kind == 0:
        return rng.normal(size=n)
    if kind == 1:  # heavy ties
        return rng.integers(0, 4, size=n).astype(float)
    if kind == 2:  # heavy tails, rounded (ties + outliers)
        return np.round(rng.standard_cauchy(size=n), 1)
    if kind == 3:  # extreme magnitudes
        return rng.normal(size=n) * 10.0 ** rng.uniform(-300, 300)
    # values differing wildly in magnitude: rounding of x_i + a is far from exact
    return np.concatenate([rng.normal(size=n // 2) * 1e-300, rng.normal(size=n - n // 2) + 1.0])


@pytest.fixture(params=["default", "forced-selection"])
def selection_mode(request, monkeypatch):
    """'forced-selection' shrinks the enumeration threshold, sample size and row block so that
    even tiny samples go through many pivot rounds, several row blocks and the no-progress
    fallback (3-draw samples often bracket the whole window)."""
    if request.param == "forced-selection":
        monkeypatch.setattr(rs, "_ENUM_PER_N", 0)
        monkeypatch.setattr(rs, "_ENUM_MIN", 1)
        monkeypatch.setattr(rs, "_SAMPLE_PER_N", 0.0)
        monkeypatch.setattr(rs, "_SAMPLE_MIN", 3)
        monkeypatch.setattr(rs, "_BLOCK", 7)
    return request.param


def test_constant_is_the_gaussian_consistency_factor():
    assert QN_CONSTANT == pytest.approx(1.0 / (math.sqrt(2.0) * norm.ppf(5.0 / 8.0)), rel=1e-14)
    assert QN_CONSTANT == pytest.approx(2.219144, abs=1e-6)


def test_order_statistic_is_h_choose_2():
    for n, k in [(2, 1), (3, 1), (4, 3), (5, 3), (10, 15), (11, 15), (100, 1275)]:
        assert qn_order(n) == k
        h = n // 2 + 1
        assert qn_order(n) == math.comb(h, 2)


def test_matches_naive_on_random_and_tied_data(selection_mode):
    rng = np.random.default_rng(0)
    trials = 250 if selection_mode == "default" else 150
    for t in range(trials):
        n = int(rng.integers(2, 120))
        x = samples(rng, n, t % 5)
        m = n * (n - 1) // 2
        assert qn_scale(x) == naive_qn(x), (n, t % 5)
        for k in {1, m, qn_order(n), int(rng.integers(1, m + 1))}:
            assert kth_pairwise_distance(x, k) == naive_kth(x, k), (n, k, t % 5)


def test_matches_naive_through_the_selection_rounds_at_moderate_n():
    # n = 2000 has ~2e6 pairs, far above the enumeration threshold: several pivot rounds
    rng = np.random.default_rng(1)
    for kind in range(5):
        x = samples(rng, 2000, kind)
        assert qn_scale(x) == naive_qn(x), kind
        assert kth_pairwise_distance(x, 7) == naive_kth(x, 7)
        assert kth_pairwise_distance(x, 1_900_000) == naive_kth(x, 1_900_000)


def test_row_cuts_are_exact_when_rounding_misleads_searchsorted():
    rng = np.random.default_rng(2)
    xs = np.sort(np.concatenate([rng.normal(size=300) * 1e-300, rng.normal(size=300) + 1.0,
                                 np.full(50, -0.5)]))
    padded = rs._pad(xs)
    wrong_guesses = 0
    # pivots are pairwise differences of the data, so use those (plus a few special values)
    pairs = rng.integers(0, len(xs), size=(60, 2))
    pivots = [abs(xs[i] - xs[j]) for i, j in pairs] + [0.0, 1e-17, 1.0, float(np.nextafter(1.5, 2))]
    for a in pivots:
        cuts = rs._cuts(padded, xs, a)
        brute = np.array([(xs - xi < a).sum() for xi in xs])
        np.testing.assert_array_equal(cuts, brute)
        guess = np.searchsorted(xs, xs + a, side="left")
        wrong = rs._wrong_cuts(padded, xs, a, guess)
        wrong_guesses += 0 if wrong is None else wrong.size
    assert wrong_guesses > 0  # the plain searchsorted guess was wrong: correction paths ran


def test_tiny_samples():
    assert qn_scale([3.0]) == 0.0  # one value: no pairs, 0 as in robustbase
    assert qn_scale([1.0, 4.0]) == pytest.approx(QN_CONSTANT * 3.0)  # n=2: the only distance
    assert qn_scale([0.0, 1.0, 4.0]) == pytest.approx(QN_CONSTANT * 1.0)  # n=3: smallest distance
    assert qn_scale([5.0, 5.0, 9.0]) == 0.0
    with pytest.raises(ValueError, match="empty"):
        qn_scale([])
    with pytest.raises(ValueError, match="finite"):
        qn_scale([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        qn_scale(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="out of range"):
        kth_pairwise_distance([1.0, 2.0, 3.0], 4)


def test_degenerate_and_torch_inputs():
    assert qn_scale(np.zeros(10_000)) == 0.0
    x = np.r_[np.zeros(600), np.arange(1.0, 401.0)]  # > half tied: Q_n = 0
    assert qn_scale(x) == naive_qn(x) == 0.0
    t = torch.randn(500, dtype=torch.float32)
    assert qn_scale(t) == naive_qn(t.double().numpy())


def test_large_n_past_statsmodels_overflow_by_rank_certificate():
    # statsmodels' Cython _qn overflows (segfaults) for n >= 46,341; check the exact rank instead
    rng = np.random.default_rng(3)
    for x in [rng.normal(size=50_000), np.round(rng.normal(size=60_000), 2)]:
        n = len(x)
        k = qn_order(n)
        q = qn_scale(x) / QN_CONSTANT
        assert q == kth_pairwise_distance(x, k)
        lt, le = two_pointer_counts(np.sort(x).tolist(), q)
        assert lt < k <= le  # q is exactly the k-th smallest pairwise distance


def test_finite_sample_factors():
    assert finite_sample_factor(7, "none") == 1.0
    assert finite_sample_factor(5, "robustbase") == 0.84401
    assert finite_sample_factor(12, "robustbase") == 0.75743
    n = 13
    assert finite_sample_factor(n, "robustbase") == pytest.approx(
        1.0 / (1.0 + (1.60188 + (-2.1284 - 5.172 / n) / n) / n))
    n = 20
    assert finite_sample_factor(n, "robustbase") == pytest.approx(
        1.0 / (1.0 + (3.67561 + (1.9654 + (6.987 - 77.0 / n) / n) / n) / n))
    assert finite_sample_factor(2, "cr1992") == 0.399
    assert finite_sample_factor(9, "cr1992") == 0.872
    assert finite_sample_factor(10, "cr1992") == pytest.approx(10 / 13.8)
    assert finite_sample_factor(11, "cr1992") == pytest.approx(11 / 12.4)
    x = np.arange(12.0) ** 1.5
    assert qn_scale(x, finite_corr="cr1992") == pytest.approx(naive_qn(x) * 12 / 15.8)
    with pytest.raises(ValueError, match="finite_corr"):
        qn_scale(x, finite_corr="robustbase2010")


def test_robustbase_correction_removes_small_sample_bias():
    # E[Q_n] for N(0,1) samples of size 10: ~1.38 uncorrected, ~0.99 with robustbase's factor
    rng = np.random.default_rng(4)
    data = rng.normal(size=(3000, 10))
    raw = np.mean([qn_scale(row) for row in data])
    corrected = np.mean([qn_scale(row, finite_corr="robustbase") for row in data])
    assert 1.30 < raw < 1.46
    assert 0.96 < corrected < 1.03


def test_matches_statsmodels_where_it_works():
    sm = pytest.importorskip("statsmodels.robust.scale")  # the naive comparison above always runs
    rng = np.random.default_rng(5)
    for n in [2, 3, 4, 5, 10, 101, 1000, 20_000, 46_000]:
        for kind in (0, 1, 2):
            x = samples(rng, n, kind)
            assert qn_scale(x) == pytest.approx(sm.qn_scale(x), rel=1e-14, abs=0.0), (n, kind)
