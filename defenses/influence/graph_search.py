"""Influence-graph search of paper 001 (Sun et al.), Sec. 3.2.2 - 3.3: pure numpy, no torch.

* ``symmetrize`` -- Eq. 7, the undirected edge weights from the pairwise influences of Eq. 4/5;
* ``greedy_search`` -- Algorithm 1, O(N^2 + kN) (the N^2 is one read of W for the top edge);
* ``agglomerative_search`` -- Algorithm 2 plus the pruning step of Sec. 3.3;
* ``naive_greedy`` / ``naive_agglomerative`` -- the same algorithms recomputing every
  candidate's score from scratch: slow references for the tests.

Conventions (ours): ``W`` is a symmetric N x N float64 matrix, ``W[i, j]`` the weight of edge
(n_i, n_j); its diagonal is never read (Eq. 7 defines edges only for i < j).  A subgraph is the
*induced* one: Alg. 1 line 11 adds every edge between the new node and the subgraph, and Alg. 2
line 8 sums over every edge inside the union.  ``k`` is the size budget eps*N (Sec. 3.3), an int
with ``2 <= k <= N`` (Alg. 1 starts from an edge, so it cannot return fewer than 2 nodes).

Tie-breaks (ours, deterministic, shared by the fast and the naive versions): the lowest node
index; for edges, the lexicographically smallest ``(i, j)`` with ``i < j``; for pairs of clusters,
the smallest ``(label_i, label_j)`` where a cluster's label is its smallest node index.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral

import numpy as np

#: ``average`` choices: the normaliser of the subgraph score (see ``greedy_search``).
AVERAGES = ("edges", "nodes")
#: ``stop`` choices of Alg. 2 (see ``agglomerative_search``).
STOPS = ("reach", "cap")
#: ``prune`` choices of Alg. 2 (see ``agglomerative_search``).
PRUNES = ("remove", "regrow")
#: ``negative`` choices of ``symmetrize``.
NEGATIVES = ("keep", "clip")
#: Side of the square tiles the input checks and the top-edge scan read W in (ours: cache-sized;
#: every value gives the same answer).
TILE = 256


@dataclass(frozen=True, eq=False)
class SearchResult:
    """What a search found.

    ``selected``: the subgraph's nodes, in order of selection (Alg. 1) or inclusion (Alg. 2).
    ``order``: all N nodes, ``selected`` first, then the rest by decreasing ``connection``
    (ties: lowest index).  ``scores``: rank scores consistent with ``order`` (N for
    ``order[0]`` down to 1 for ``order[-1]``; higher = more suspicious).  ``connection``: each
    node's summed edge weight to the selected nodes other than itself.  ``total``: the sum of
    the subgraph's internal edge weights; ``average``: ``total`` over its edges or nodes, per
    ``average_over``.  ``merged``: Alg. 2's merged sub-graph before pruning (line 13, in
    inclusion order); ``None`` for Alg. 1.
    """

    selected: np.ndarray
    order: np.ndarray
    scores: np.ndarray
    connection: np.ndarray
    total: float
    average: float
    average_over: str
    merged: np.ndarray | None = None


# ----------------------------------------------------------------------------- Eq. 7

def symmetrize(I: np.ndarray, *, negative: str = "keep") -> np.ndarray:
    """Edge weights of Eq. 7, ``EdgeWeight(n_i, n_j) = (I(z_i, z_j) + I(z_j, z_i)) / 2``.

    ``I[i, j]`` is the influence of training example i on j (Eq. 4 / 5), in Eq. 4's sign:
    positive when up-weighting z_i raises the score of z_j's label (Sec. 3.2.1: "the larger the
    influence is, the more likely z_i and z_j are malicious").  The diagonal (self-influence)
    is dropped -- set to 0 -- since Eq. 7 holds "for all 1 <= i < j <= N" and Sec. 3.2.2 builds
    the graph from the I(z_i, z_j) with i != j.  The result is exactly symmetric.

    ``negative``: Eq. 7 does not clip, so ``"keep"`` (default) keeps negative edge weights;
    ``"clip"`` (ours) sets negative edge weights (after averaging) to 0.
    """
    I = np.asarray(I, dtype=np.float64)
    if I.ndim != 2 or I.shape[0] != I.shape[1]:
        raise ValueError(f"I must be a square N x N matrix, got shape {I.shape}")
    if not np.isfinite(I).all():
        raise ValueError("I must be finite (no NaN or inf)")
    _check_choice("negative", negative, NEGATIVES)
    W = (I + I.T) / 2
    np.fill_diagonal(W, 0.0)
    if negative == "clip":
        np.maximum(W, 0.0, out=W)
    return W


# ----------------------------------------------------------------------------- Alg. 1

def greedy_search(W: np.ndarray, k: int, *, average: str = "edges") -> SearchResult:
    """Algorithm 1 (greedy search), incremental: O(N^2 + kN) time, O(N) extra memory.

    Line 2 takes the heaviest edge; lines 4-11 then add, while fewer than k nodes are in, the
    node n maximising ``s = sum_{n_k in V^} EdgeWeight(n, n_k)`` (line 8), kept for every node
    in one array updated in O(N) per added node.

    ``average`` only sets how ``SearchResult.average`` is reported, never the selection.
    Sec. 3.3 says "the average sum of the edges" and Eq. 8/9 divide by |E~| (``"edges"``,
    default); Alg. 2 line 8 divides by the node count |G~_1 u G~_2| (``"nodes"``).  Every
    candidate of a greedy step yields a subgraph of the same size, so both, and line 8's plain
    sum, pick the same node.
    """
    W = _check_weights(W)
    _check_budget(k, len(W))
    _check_choice("average", average, AVERAGES)
    return _result(W, _greedy_selection(W, k), average)


def _greedy_selection(W: np.ndarray, k: int) -> list[int]:
    """Alg. 1 lines 2-11; ``gain[v]`` is line 8's s for every node v outside (``-inf`` inside)."""
    i, j = _top_edge(W)
    selected = [i, j]
    gain = W[i] + W[j]
    gain[[i, j]] = -np.inf
    while len(selected) < k:
        v = int(np.argmax(gain))
        selected.append(v)
        gain += W[v]
        gain[v] = -np.inf
    return selected


def _top_edge(W: np.ndarray) -> tuple[int, int]:
    """Alg. 1 line 2: the heaviest edge ``(i, j)``, ``i < j`` (ties: lexicographically first),
    scanning the upper triangle in row blocks."""
    n = len(W)
    best, edge = -np.inf, (0, 1)
    for a in range(0, n, TILE):
        b = min(a + TILE, n)
        vals, cols = _row_maxima_above_diagonal(W, a, b)
        r = int(np.argmax(vals))
        if vals[r] > best:
            best, edge = vals[r], (a + r, int(cols[r]))
    return edge


def _row_maxima_above_diagonal(W: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows a..b-1: the maximum of ``W[i, i+1:]`` and its first column (-inf, -1 if none)."""
    rows = np.arange(b - a)
    head = np.where(np.triu(np.ones((b - a, b - a), dtype=bool), 1), W[a:b, a:b], -np.inf)
    cols = head.argmax(1)
    vals = head[rows, cols]
    cols = cols + a
    if b < len(W):
        tail = W[a:b, b:]
        tail_cols = tail.argmax(1)
        tail_vals = tail[rows, tail_cols]
        use_tail = tail_vals > vals
        vals = np.where(use_tail, tail_vals, vals)
        cols = np.where(use_tail, tail_cols + b, cols)
    return vals, np.where(np.isneginf(vals), -1, cols)


def naive_greedy(W: np.ndarray, k: int, *, average: str = "edges") -> SearchResult:
    """Algorithm 1 line by line (every candidate's line-8 sum from scratch), O(N^2 + N k^2)
    Python steps; the reference for ``greedy_search``."""
    W = _check_weights(W)
    _check_budget(k, len(W))
    _check_choice("average", average, AVERAGES)
    return _result(W, _naive_greedy_selection(W, k), average)


def _naive_greedy_selection(W: np.ndarray, k: int) -> list[int]:
    n = len(W)
    best, selected = -np.inf, []
    for i in range(n):
        for j in range(i + 1, n):
            if W[i, j] > best:
                best, selected = W[i, j], [i, j]
    while len(selected) < k:
        best_s, best_n = -np.inf, -1
        for v in range(n):
            if v in selected:
                continue
            s = 0.0
            for u in selected:
                s += W[v, u]
            if s > best_s:
                best_s, best_n = s, v
        selected.append(best_n)
    return selected


# ----------------------------------------------------------------------------- Alg. 2

def agglomerative_search(W: np.ndarray, k: int, *, average: str = "nodes", stop: str = "reach",
                         prune: str = "remove") -> SearchResult:
    """Algorithm 2 (agglomerative search) and Sec. 3.3's pruning, incremental.

    Every node starts as its own sub-graph (line 1); each iteration merges the pair with the
    best union score (lines 6-12).  Kept between merges: the inter-cluster weight sums, each
    cluster's internal sum and size, and for every cluster its best partner among the clusters
    of higher label; a merge updates the merged cluster's row and column, and rescans only the
    rows whose best partner was one of the two merged clusters and now scores lower.

    ``average`` -- the union score's normaliser.  ``"nodes"`` (default): Alg. 2 line 8,
    "1/|G~_1 u G~_2| sum_{(n_p, n_q) in G~_1 u G~_2} EdgeWeight(n_p, n_q)", the only place the
    paper writes this score out.  ``"edges"``: Eq. 8/9's "1/|E~| sum_{(n_i, n_j) in E~}", the
    objective the search approximates (Sec. 3.3: "the average sum of the edges").

    ``stop`` -- line 3, "while |G~| < eps N, for all G~ in G", and Sec. 3.3, "This process
    terminates until the size of the merged graph reaches eps N ... the merged graph is likely to
    be larger than eps N, so we prune it".  ``"reach"`` (default): every pair is a candidate;
    stop after the first merge giving a sub-graph of >= k nodes (line 13's G^).  ``"cap"``
    (ours): only pairs whose union has <= k nodes are candidates, so the search stops at exactly
    k unless no such pair is left -- then the best pair overall is merged and pruned.

    ``prune`` -- "we prune it following the steps as in greedy search, but selecting the node
    that causes the least score reduction at each time".  ``"remove"`` (default): drop, one at
    a time, the node whose removal leaves the highest score (the node with the least weight to
    the rest; ties: lowest index); the survivors keep the inclusion order.  ``"regrow"``:
    rerun Algorithm 1 inside the merged sub-graph (adding the node that lowers the score least).

    ``selected`` is in inclusion order: by the merge step at which a node first left its
    singleton (ties: lowest index); under ``"regrow"``, pruned sub-graphs are in Alg. 1 order.
    Time: O(N^2) to start; per merge O(N) plus O(N) per rescanned row (worst case O(N^2) per
    merge, O(N^3) overall, the paper's bound for k ~ N); pruning O(m^2) for a merged sub-graph of
    m nodes.  Memory: one N x N copy of W.
    """
    W = _check_weights(W)
    _check_budget(k, len(W))
    _check_choices(average=average, stop=stop, prune=prune)
    state = _MergeState(W, k, average, cap=(stop == "cap"))
    merged = state.run()
    return _result(W, _pruned(W, merged, k, prune, _greedy_selection), average, merged=merged)


class _MergeState:
    """The maintained quantities of the fast Alg. 2 (labels: a cluster's smallest node)."""

    def __init__(self, W: np.ndarray, k: int, average: str, cap: bool):
        n = len(W)
        self.k, self.average, self.cap = k, average, cap
        self.S = W.copy()                       # S[a, c]: summed weight between clusters a, c
        self.t = np.zeros(n)                    # t[a]: summed weight inside cluster a
        self.size = np.ones(n, dtype=np.int64)
        self.active = np.ones(n, dtype=bool)
        self.members = [[i] for i in range(n)]
        self.joined = np.full(n, n, dtype=np.int64)  # merge step a node first left its singleton
        self.best_val = np.full(n, -np.inf)     # best union score with a cluster of higher label
        self.best_arg = np.full(n, -1, dtype=np.int64)
        for a in range(n):
            self.refresh(a)

    def union_scores(self, a: int, cols: np.ndarray | slice) -> np.ndarray:
        """Union scores (Alg. 2 line 8) of cluster a with clusters ``cols``; ``-inf`` where
        inactive or, under ``cap``, larger than k."""
        size = self.size[a] + self.size[cols]
        s = _average(self.t[a] + self.t[cols] + self.S[a, cols], size, self.average)
        return np.where(self.active[cols] & ~(self.cap & (size > self.k)), s, -np.inf)

    def refresh(self, a: int) -> None:
        """Rescan cluster a's best partner among the labels above a."""
        s = self.union_scores(a, slice(a + 1, None))
        c = int(np.argmax(s)) if len(s) else 0
        found = len(s) > 0 and s[c] > -np.inf
        self.best_val[a] = s[c] if found else -np.inf
        self.best_arg[a] = a + 1 + c if found else -1

    def run(self) -> np.ndarray:
        """Lines 3-13: merge until a sub-graph has >= k nodes; return it in inclusion order."""
        step = 0
        while True:
            a = int(np.argmax(self.best_val))
            if self.best_val[a] == -np.inf:
                self.uncap()
                continue
            b = int(self.best_arg[a])
            self.merge(a, b, step)
            step += 1
            if self.size[a] >= self.k:
                return _inclusion_order(self.members[a], self.joined)

    def uncap(self) -> None:
        """``cap`` found no pair of <= k nodes: every pair becomes a candidate."""
        if not self.cap:
            raise RuntimeError("agglomerative search ran out of pairs before reaching k")
        self.cap = False
        for a in np.flatnonzero(self.active):
            self.refresh(int(a))

    def merge(self, a: int, b: int, step: int) -> None:
        """Line 12: cluster b (label > a) joins cluster a; update a's row and column of S, then
        the best partners that involved a or b."""
        for c in (a, b):
            if self.size[c] == 1:
                self.joined[c] = step
        self.t[a] = self.t[a] + self.t[b] + self.S[a, b]
        self.S[a] += self.S[b]
        self.S[:, a] += self.S[:, b]
        self.size[a] += self.size[b]
        self.members[a] += self.members[b]
        self.members[b] = []
        self.active[b] = False
        self.best_val[b], self.best_arg[b] = -np.inf, -1
        self.refresh(a)
        self.update_lower_rows(a, b)
        between = np.flatnonzero(self.active[a + 1:b] & (self.best_arg[a + 1:b] == b)) + a + 1
        for c in between:
            self.refresh(int(c))

    def update_lower_rows(self, a: int, b: int) -> None:
        """Rows c < a: their partner a changed and b left.  A row whose best was a or b keeps a
        if a's new score is no lower (everything else in it is lower, or equal at a higher
        label); otherwise it is rescanned.  Other rows take a if it now beats their best."""
        c = np.flatnonzero(self.active[:a])
        if len(c) == 0:
            return
        s = self.column_scores(c, a)
        old_val, old_arg = self.best_val[c], self.best_arg[c]
        was_ab = (old_arg == a) | (old_arg == b)
        beats = (s > old_val) | ((s == old_val) & (s > -np.inf) & (a < old_arg))
        take = np.where(was_ab, s >= old_val, beats)
        self.best_val[c[take]] = s[take]
        self.best_arg[c[take]] = a
        for row in c[was_ab & ~take]:
            self.refresh(int(row))

    def column_scores(self, rows: np.ndarray, a: int) -> np.ndarray:
        """``union_scores(row, [a])`` for many rows at once, with the same arithmetic as ``refresh``."""
        size = self.size[rows] + self.size[a]
        s = _average(self.t[rows] + self.t[a] + self.S[rows, a], size, self.average)
        return np.where(~(self.cap & (size > self.k)), s, -np.inf)


def _inclusion_order(nodes: list[int] | np.ndarray, joined: np.ndarray) -> np.ndarray:
    """Nodes sorted by the merge step at which they first left their singleton, then index."""
    nodes = np.asarray(nodes, dtype=np.intp)
    return nodes[np.lexsort((nodes, joined[nodes]))]


def _pruned(W: np.ndarray, merged: np.ndarray, k: int, prune: str,
            greedy: Callable[[np.ndarray, int], list[int]]) -> np.ndarray:
    """Sec. 3.3's pruning of the merged sub-graph (in inclusion order) down to k nodes."""
    if len(merged) == k:
        return merged
    members = np.sort(merged)
    if prune == "regrow":
        return members[greedy(W[np.ix_(members, members)], k)]
    keep = set(_remove_weakest(W, members, k).tolist())
    return np.array([v for v in merged if v in keep], dtype=np.intp)


def _remove_weakest(W: np.ndarray, members: np.ndarray, k: int) -> np.ndarray:
    """``prune="remove"``: drop the node of least weight to the rest (ties: lowest index), one at
    a time, updating the weights in O(m) per removal."""
    sub = W[np.ix_(members, members)].copy()
    np.fill_diagonal(sub, 0.0)
    conn = sub.sum(1)
    alive = np.ones(len(members), dtype=bool)
    for _ in range(len(members) - k):
        v = int(np.argmin(np.where(alive, conn, np.inf)))
        alive[v] = False
        conn -= sub[v]
    return members[alive]


def naive_agglomerative(W: np.ndarray, k: int, *, average: str = "nodes", stop: str = "reach",
                        prune: str = "remove") -> SearchResult:
    """Algorithm 2 recomputing every pair's union score from scratch at every merge (block
    sums from the membership matrix, O(m N^2) per merge), and the pruning recomputing every
    candidate sub-graph's score; the reference for ``agglomerative_search``."""
    W = _check_weights(W)
    n = len(W)
    _check_budget(k, n)
    _check_choices(average=average, stop=stop, prune=prune)
    W0 = W.copy()
    np.fill_diagonal(W0, 0.0)
    clusters, joined, cap = [[i] for i in range(n)], np.full(n, n, dtype=np.int64), stop == "cap"
    for step in range(n):
        pair = _naive_best_pair(W0, clusters, k, average, cap)
        if pair is None:
            cap = False
            pair = _naive_best_pair(W0, clusters, k, average, cap)
        x, y = pair
        for c in (x, y):
            if len(clusters[c]) == 1:
                joined[clusters[c][0]] = step
        clusters[x] = clusters[x] + clusters.pop(y)
        if len(clusters[x]) >= k:
            break
    merged = _inclusion_order(clusters[x], joined)
    if prune == "remove" and len(merged) > k:
        keep = set(_naive_remove_weakest(W0, sorted(merged), k, average))
        selected = np.array([v for v in merged if v in keep], dtype=np.intp)
    else:
        selected = _pruned(W, merged, k, prune, _naive_greedy_selection)
    return _result(W, selected, average, merged=merged)


def _naive_best_pair(W0: np.ndarray, clusters: list[list[int]], k: int, average: str,
                     cap: bool) -> tuple[int, int] | None:
    """Lines 6-11: the pair (x, y), x < y, of best union score, from scratch; clusters are kept
    in label order, so the first maximum in row-major order is the tie-break."""
    m, n = len(clusters), len(W0)
    M = np.zeros((m, n))
    for x, nodes in enumerate(clusters):
        M[x, nodes] = 1.0
    block = M @ W0 @ M.T
    inside = np.diag(block) / 2
    size = M.sum(1).astype(np.int64)
    sizes = size[:, None] + size[None, :]
    s = _average(inside[:, None] + inside[None, :] + block, sizes, average)
    ok = np.triu(np.ones((m, m), dtype=bool), 1) & ~(cap & (sizes > k))
    s = np.where(ok, s, -np.inf)
    flat = int(np.argmax(s))
    return None if s.flat[flat] == -np.inf else divmod(flat, m)


def _naive_remove_weakest(W0: np.ndarray, members: list[int], k: int, average: str) -> list[int]:
    """Drop, one at a time, the node whose removal leaves the best score, from scratch."""
    members = list(members)
    while len(members) > k:
        best, drop = -np.inf, -1
        for v in members:
            rest = [u for u in members if u != v]
            s = _average(W0[np.ix_(rest, rest)].sum() / 2, len(rest), average)
            if s > best:
                best, drop = s, v
        members.remove(drop)
    return members


# ----------------------------------------------------------------------------- shared

def _average(total: np.ndarray | float, size: np.ndarray | int, average: str) -> np.ndarray | float:
    """Sec. 3.3's subgraph score of ``size`` nodes with internal weight ``total``: per edge
    (Eq. 8/9) or per node (Alg. 2 line 8)."""
    if average == "nodes":
        return total / size
    return 2.0 * total / (size * (size - 1))


def _result(W: np.ndarray, selected: list[int] | np.ndarray, average: str,
            merged: np.ndarray | None = None) -> SearchResult:
    """The ``SearchResult`` of a selection: connections summed row by row in selection order."""
    n = len(W)
    sel = np.asarray(selected, dtype=np.intp)
    connection = np.zeros(n)
    for i in sel:
        connection += W[i]
    inner = W[np.ix_(sel, sel)].copy()
    np.fill_diagonal(inner, 0.0)
    connection[sel] = inner.sum(1)
    total = float(inner.sum() / 2)
    inside = np.zeros(n, dtype=bool)
    inside[sel] = True
    rest = np.flatnonzero(~inside)
    order = np.concatenate([sel, rest[np.lexsort((rest, -connection[rest]))]])
    scores = np.empty(n)
    scores[order] = np.arange(n, 0, -1, dtype=np.float64)
    return SearchResult(selected=sel, order=order, scores=scores, connection=connection, total=total,
                        average=float(_average(total, len(sel), average)), average_over=average,
                        merged=merged)


def _check_weights(W: np.ndarray) -> np.ndarray:
    """W as float64, checked square (N >= 2), finite and exactly symmetric, tile by tile."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] < 2:
        raise ValueError(f"W must be a square N x N matrix with N >= 2, got shape {W.shape}")
    n = len(W)
    for a in range(0, n, TILE):
        for c in range(a, n, TILE):
            tile = W[a:a + TILE, c:c + TILE]
            if not np.isfinite(tile).all():
                raise ValueError("W must be finite (no NaN or inf)")
            if not np.array_equal(tile, W[c:c + TILE, a:a + TILE].T):
                raise ValueError("W must be exactly symmetric (W[i, j] == W[j, i], finite); build it "
                                 "with symmetrize(I) (Eq. 7) or (W + W.T) / 2")
    return W


def _check_budget(k: int, n: int) -> None:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, Integral):
        raise TypeError(f"k (the budget eps*N, Sec. 3.3) must be an int, got {k!r}")
    if not 2 <= k <= n:
        raise ValueError(f"k (the budget eps*N, Sec. 3.3) must satisfy 2 <= k <= N = {n}, got {k}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_choices(*, average: str, stop: str, prune: str) -> None:
    _check_choice("average", average, AVERAGES)
    _check_choice("stop", stop, STOPS)
    _check_choice("prune", prune, PRUNES)
