"""Influence-graph search of paper 001 (defenses/influence/graph_search.py): Eq. 7, Alg. 1, Alg. 2.

The fast searches must equal the naive (from-scratch) ones exactly, on random tiny graphs with
and without ties, under every option; recover a planted dense block; and never beat the
exhaustive optimum of Eq. 9 on graphs small enough to enumerate.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from defenses.influence.graph_search import (AVERAGES, PRUNES, STOPS, SearchResult, agglomerative_search,
                                             greedy_search, naive_agglomerative, naive_greedy, symmetrize)

AGG_OPTIONS = list(itertools.product(AVERAGES, STOPS, PRUNES))


def random_graph(seed: int, n_max: int = 12) -> tuple[np.ndarray, int]:
    """A random symmetric graph of 2..n_max nodes and a budget k; odd seeds draw weights from
    {-2, ..., 2} (many exact ties; every sum is exact), even seeds Gaussian weights."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, n_max + 1))
    k = int(rng.integers(2, n + 1))
    raw = rng.integers(-2, 3, (n, n)).astype(float) if seed % 2 else rng.standard_normal((n, n))
    return symmetrize(raw), k


def planted_block(n: int, m: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights ~ N(0, noise^2), plus 1 inside a random block of m nodes; returns (W, is_block)."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.normal(0.0, noise, (n, n)), 1)
    W = upper + upper.T
    block = rng.choice(n, m, replace=False)
    W[np.ix_(block, block)] += 1.0
    np.fill_diagonal(W, 0.0)
    is_block = np.zeros(n, dtype=bool)
    is_block[block] = True
    return W, is_block


def assert_same(a: SearchResult, b: SearchResult) -> None:
    for field in ("selected", "order", "scores", "connection"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert (a.total, a.average, a.average_over) == (b.total, b.average, b.average_over)
    if a.merged is None:
        assert b.merged is None
    else:
        np.testing.assert_array_equal(a.merged, b.merged, err_msg="merged")


def internal(W: np.ndarray, nodes) -> float:
    nodes = list(nodes)
    return float(sum(W[p, q] for p, q in itertools.combinations(nodes, 2)))


def optimum(W: np.ndarray, k: int) -> tuple[float, set[int]]:
    """Eq. 9 by enumeration: the best internal weight over all k-subsets (fixed k, so the edge
    and node averages rank subsets alike)."""
    best = max(itertools.combinations(range(len(W)), k), key=lambda s: internal(W, s))
    return internal(W, best), set(best)


# ----------------------------------------------------------------------------- Eq. 7

def test_symmetrize_matches_eq7_by_hand():
    I = np.array([[5.0, 1.0, -2.0],
                  [3.0, 7.0, 4.0],
                  [0.0, -6.0, 9.0]])
    # (I_01 + I_10)/2 = 2, (I_02 + I_20)/2 = -1, (I_12 + I_21)/2 = -1; no self-loops.
    expected = np.array([[0.0, 2.0, -1.0],
                         [2.0, 0.0, -1.0],
                         [-1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(symmetrize(I), expected)
    np.testing.assert_array_equal(symmetrize(I, negative="clip"), np.maximum(expected, 0.0))


def test_symmetrize_is_exactly_symmetric_and_leaves_input_alone():
    I = np.random.default_rng(0).standard_normal((50, 50))
    before = I.copy()
    W = symmetrize(I)
    assert np.array_equal(W, W.T) and not np.diag(W).any()
    np.testing.assert_array_equal(I, before)


@pytest.mark.parametrize("bad, message", [(np.ones((2, 3)), "square"),
                                          (np.array([[0.0, np.nan], [1.0, 0.0]]), "finite")])
def test_symmetrize_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        symmetrize(bad)


# ----------------------------------------------------------------------------- planted block

def test_greedy_recovers_a_planted_block():
    W, is_block = planted_block(300, 20, 0.3, seed=1)
    res = greedy_search(W, 20)
    assert is_block[res.selected].mean() >= 0.95
    assert average_precision_score(is_block, res.scores) >= 0.95


@pytest.mark.parametrize("average, stop, prune", AGG_OPTIONS)
def test_agglomerative_recovers_a_planted_block(average, stop, prune):
    W, is_block = planted_block(300, 20, 0.3, seed=1)
    res = agglomerative_search(W, 20, average=average, stop=stop, prune=prune)
    assert is_block[res.selected].mean() >= 0.95
    assert average_precision_score(is_block, res.scores) >= 0.95


# ----------------------------------------------------------------------------- fast == naive

def test_greedy_equals_naive_on_random_tiny_graphs():
    for seed in range(120):
        W, k = random_graph(seed)
        for average in AVERAGES:
            assert_same(greedy_search(W, k, average=average), naive_greedy(W, k, average=average))


@pytest.mark.parametrize("average, stop, prune", AGG_OPTIONS)
def test_agglomerative_equals_naive_on_random_tiny_graphs(average, stop, prune):
    for seed in range(120):
        W, k = random_graph(seed)
        fast = agglomerative_search(W, k, average=average, stop=stop, prune=prune)
        assert_same(fast, naive_agglomerative(W, k, average=average, stop=stop, prune=prune))


def test_constant_weights_break_ties_by_lowest_index():
    W = np.ones((6, 6))
    np.testing.assert_array_equal(greedy_search(W, 4).selected, [0, 1, 2, 3])
    np.testing.assert_array_equal(greedy_search(W, 4).order, np.arange(6))
    for average, stop, prune in AGG_OPTIONS:
        res = agglomerative_search(W, 4, average=average, stop=stop, prune=prune)
        assert_same(res, naive_agglomerative(W, 4, average=average, stop=stop, prune=prune))


def test_cap_falls_back_to_an_overshooting_merge_when_no_pair_fits():
    """Two heavy triangles, negative cross edges but one, k = 4: under "cap" the triangles form,
    then no pair of clusters fits in 4 nodes, so the best pair overall merges and is pruned."""
    W = np.full((6, 6), -5.0)
    W[np.ix_([0, 1, 2], [0, 1, 2])] = 5.0
    W[np.ix_([3, 4, 5], [3, 4, 5])] = 4.0
    W[0, 3] = W[3, 0] = 1.0
    for prune in PRUNES:
        res = agglomerative_search(W, 4, stop="cap", prune=prune)
        assert sorted(res.merged) == list(range(6)) and len(res.selected) == 4
        assert set(res.selected) == {0, 1, 2, 3}
        assert_same(res, naive_agglomerative(W, 4, stop="cap", prune=prune))


# ----------------------------------------------------------------------------- brute force

def test_searches_never_beat_the_exhaustive_optimum():
    for seed in range(40):
        W, k = random_graph(seed, n_max=10)
        best, _ = optimum(W, k)
        assert greedy_search(W, k).total <= best + 1e-12
        for average, stop, prune in AGG_OPTIONS:
            assert agglomerative_search(W, k, average=average, stop=stop, prune=prune).total <= best + 1e-12


def test_searches_find_the_optimum_of_a_clear_block():
    W, is_block = planted_block(10, 4, 0.05, seed=3)
    best, best_set = optimum(W, 4)
    assert best_set == set(np.flatnonzero(is_block))
    results = [greedy_search(W, 4)] + [agglomerative_search(W, 4, average=a, stop=s, prune=p)
                                       for a, s, p in AGG_OPTIONS]
    for res in results:
        assert set(res.selected) == best_set
        assert res.total == pytest.approx(best, abs=1e-12)


# ----------------------------------------------------------------------------- result contract

@pytest.mark.parametrize("search", [greedy_search, agglomerative_search])
def test_result_is_consistent(search):
    W, k = symmetrize(np.random.default_rng(7).standard_normal((40, 40))), 6
    res = search(W, k)
    n = len(W)
    assert sorted(res.order) == list(range(n)) and len(res.selected) == k
    np.testing.assert_array_equal(res.order[:k], res.selected)
    np.testing.assert_array_equal(np.argsort(-res.scores, kind="stable"), res.order)
    rest = res.order[k:]
    assert np.all(np.diff(res.connection[rest]) <= 0)
    for v in range(n):
        others = [u for u in res.selected if u != v]
        assert res.connection[v] == pytest.approx(W[v, others].sum(), abs=1e-12)
    assert res.total == pytest.approx(internal(W, res.selected), abs=1e-12)
    assert res.average == pytest.approx(res.total / (k * (k - 1) / 2) if res.average_over == "edges"
                                        else res.total / k)


def test_greedy_selections_are_nested_in_k():
    W = symmetrize(np.random.default_rng(2).standard_normal((60, 60)))
    full = greedy_search(W, 30).selected
    for k in (2, 5, 17):
        np.testing.assert_array_equal(greedy_search(W, k).selected, full[:k])


def test_agglomerative_prunes_the_merged_subgraph():
    W = symmetrize(np.random.default_rng(5).standard_normal((80, 80)))
    for average, stop, prune in AGG_OPTIONS:
        res = agglomerative_search(W, 8, average=average, stop=stop, prune=prune)
        assert len(res.merged) >= 8 and set(res.selected) <= set(res.merged)
        if prune == "regrow" and len(res.merged) > 8:
            members = np.sort(res.merged)
            inner = greedy_search(W[np.ix_(members, members)], 8).selected
            np.testing.assert_array_equal(res.selected, members[inner])


def test_diagonal_is_ignored():
    W, k = random_graph(11)
    noisy = W.copy()
    np.fill_diagonal(noisy, 100.0)
    assert_same(greedy_search(W, k), greedy_search(noisy, k))
    assert_same(agglomerative_search(W, k), agglomerative_search(noisy, k))


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("search", [greedy_search, naive_greedy, agglomerative_search, naive_agglomerative])
def test_invalid_average_names_the_choices(search):
    with pytest.raises(ValueError, match=r"average must be one of 'edges', 'nodes'; got 'mean'"):
        search(np.eye(3), 2, average="mean")


@pytest.mark.parametrize("option, choices", [("stop", "'reach', 'cap'"), ("prune", "'remove', 'regrow'")])
def test_invalid_agglomerative_options_name_the_choices(option, choices):
    for search in (agglomerative_search, naive_agglomerative):
        with pytest.raises(ValueError, match=f"{option} must be one of {choices}; got 'x'"):
            search(np.eye(3), 2, **{option: "x"})


def test_invalid_negative_names_the_choices():
    with pytest.raises(ValueError, match="negative must be one of 'keep', 'clip'"):
        symmetrize(np.eye(3), negative="abs")


@pytest.mark.parametrize("k", [0, 1, 4])
def test_budget_out_of_range(k):
    with pytest.raises(ValueError, match=r"2 <= k <= N = 3"):
        greedy_search(np.eye(3), k)


@pytest.mark.parametrize("k", [2.0, True, "2"])
def test_budget_must_be_an_int(k):
    with pytest.raises(TypeError, match="must be an int"):
        agglomerative_search(np.eye(3), k)


def test_weights_must_be_square_finite_and_symmetric():
    with pytest.raises(ValueError, match="square"):
        greedy_search(np.ones((3, 4)), 2)
    with pytest.raises(ValueError, match="finite"):
        greedy_search(np.full((3, 3), np.inf), 2)
    with pytest.raises(ValueError, match="symmetric.*symmetrize"):
        agglomerative_search(np.triu(np.ones((3, 3))), 2)
    big = np.zeros((600, 600))
    big[550, 3] = 1.0  # an asymmetry in a tile far from the diagonal
    with pytest.raises(ValueError, match="symmetric"):
        greedy_search(big, 2)
