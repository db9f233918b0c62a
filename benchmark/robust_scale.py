"""Rousseeuw & Croux's Q_n robust scale estimator (paper 000 Eq. 13), exact and 64-bit safe.

Definition (Rousseeuw & Croux 1993, "Alternatives to the median absolute deviation")::

    Q_n = c * {|x_i - x_j| : i < j}_(k),   k = C(h, 2),   h = floor(n/2) + 1,

i.e. ``c`` times the ``k``-th smallest of the ``n(n-1)/2`` pairwise distances.

Two differences from paper 000's printed Eq. 13, both following statsmodels' ``qn_scale``,
R robustbase's ``Qn`` and the authors' reference code (which calls statsmodels):

* the order statistic is ``k = C(h, 2)`` with ``h = floor(n/2) + 1``; the paper prints
  ``r = floor(n/2) + 1``, which would be a far lower quantile of the pairwise distances
  (a transcription slip: see ../shared/reference/original_code.md Sec. 3.1);
* the Gaussian consistency constant is ``c = 1 / (sqrt(2) * Phi^-1(5/8)) = 2.219144...``; the
  paper prints 2.2219, the historical typo of the 1992/1993 papers that robustbase corrected in
  2010.  For ranking candidates the constant is irrelevant; it only scales absolute thresholds.

The default applies **no finite-sample correction** (``finite_corr="none"``), which matches
statsmodels and the reference code.  ``"robustbase"`` applies R robustbase's current factors
(simulation-based: a table for n <= 12, a formula in n above); ``"cr1992"`` the factors of
Croux & Rousseeuw (1992) (a table for n <= 9, then n/(n+1.4) for odd n and n/(n+3.8) for even
n).  Without correction Q_n overstates sigma by roughly 7-38% for n <= 50
(../shared/reference/influence_perf.md Sec. 4).

Tiny samples: ``n = 0`` is an error; ``n = 1`` has no pairs and returns 0.0 (as robustbase;
statsmodels raises IndexError); ``n = 2`` and ``n = 3`` give ``h = 2, k = 1``, i.e. ``c`` times
the smallest pairwise distance (for n = 2 the only one).

Algorithm (ours; expected O(n log n) time and O(n) memory like Croux & Rousseeuw 1992, but
randomised selection instead of their weighted-median pivots): sort once; the pairwise
distances then form ``n`` sorted rows ``d_ij = x_j - x_i`` (j > i).  Keep a per-row window of
candidate columns; each round samples candidates, picks two pivots that bracket the wanted
rank (Floyd-Rivest), counts the distances below each pivot in every row with a vectorised
``searchsorted`` (in cache-sized blocks of rows), and shrinks the windows.  Once at most
``~4n`` candidates remain they are enumerated and ``np.partition`` picks the answer.  A round
that fails to shrink falls back to a single three-way pivot, which always shrinks, so the loop
terminates.  All counts are int64 (no overflow below n ~ 3e9).  Comparisons are made on the
floating-point differences ``fl(x_j - x_i)`` themselves, so the result equals the naive O(n^2)
computation bit for bit.  Pivot sampling uses a fixed internal seed; the returned value does
not depend on it.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

#: Gaussian consistency constant 1 / (sqrt(2) * Phi^-1(5/8)) = 2.2191444659850...
#: (Rousseeuw & Croux 1993; statsmodels / robustbase default; paper 000 Eq. 13 prints 2.2219).
QN_CONSTANT: float = 1.0 / (math.sqrt(2.0) * NormalDist().inv_cdf(5.0 / 8.0))

FINITE_CORRECTIONS = ("none", "robustbase", "cr1992")

# R robustbase (>= 2010) finite-sample factors for n = 2..12 (Maechler's simulation, 2^27 reps);
# source: ../shared/reference/influence_perf.md Sec. 4.
_ROBUSTBASE_SMALL = (0.399356, 0.99365, 0.51321, 0.84401, 0.61220, 0.85877, 0.66993,
                     0.87344, 0.72014, 0.88906, 0.75743)
# Croux & Rousseeuw (1992) factors for n = 2..9 (computed with the constant 2.2219).
_CR1992_SMALL = (0.399, 0.994, 0.512, 0.844, 0.611, 0.857, 0.669, 0.872)

_SEED = 0x51C0  # ours: fixed seed for pivot sampling; the exact result does not depend on it
_Z = 3.0  # ours: pivot bracket half-width in sample standard deviations (Floyd-Rivest)
_ENUM_PER_N = 4  # ours: enumerate the candidates once at most max(4 n, 4096) remain
_ENUM_MIN = 4096
_SAMPLE_PER_N = 1.0  # ours: pivot samples of at most n draws (see _sample_size) ...
_SAMPLE_MIN = 4096  # ... and at least 4096
_SAMPLE_SLACK = 2.0  # ours: oversampling factor over the planned minimum
_BLOCK = 16384  # ours: rows per cache block when counting (speed only)


def qn_order(n: int) -> int:
    """``k = C(h, 2)`` with ``h = floor(n/2) + 1``: the order statistic Q_n uses (1-based)."""
    h = n // 2 + 1
    return h * (h - 1) // 2


def finite_sample_factor(n: int, finite_corr: str = "none") -> float:
    """Multiplicative small-sample correction ``d_n`` applied on top of the constant ``c``."""
    if finite_corr not in FINITE_CORRECTIONS:
        raise ValueError(f"finite_corr must be one of {FINITE_CORRECTIONS}, got {finite_corr!r}")
    if finite_corr == "none" or n < 2:
        return 1.0
    if finite_corr == "robustbase":
        if n <= 12:
            return _ROBUSTBASE_SMALL[n - 2]
        if n % 2 == 1:
            f = 1.60188 + (-2.1284 - 5.172 / n) / n
        else:
            f = 3.67561 + (1.9654 + (6.987 - 77.0 / n) / n) / n
        return 1.0 / (1.0 + f / n)
    # cr1992
    if n <= 9:
        return _CR1992_SMALL[n - 2]
    return n / (n + 1.4) if n % 2 == 1 else n / (n + 3.8)


def qn_scale(x: Any, c: float = QN_CONSTANT, finite_corr: str = "none") -> float:
    """Q_n of the 1-D sample ``x`` (paper 000 Eq. 13; see the module docstring for k and c)."""
    xs = _prepare(x)
    n = len(xs)
    if n == 1:
        return 0.0
    return float(c * finite_sample_factor(n, finite_corr) * _kth_pairwise(xs, qn_order(n)))


def kth_pairwise_distance(x: Any, k: int) -> float:
    """Exact ``k``-th smallest (1-based) of the ``n(n-1)/2`` distances ``|x_i - x_j|, i < j``."""
    xs = _prepare(x)
    m = len(xs) * (len(xs) - 1) // 2
    if not 1 <= k <= m:
        raise ValueError(f"k={k} is out of range: a sample of {len(xs)} values has {m} pairs")
    return float(_kth_pairwise(xs, k))


# -- implementation ---------------------------------------------------------------------------

def _prepare(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"Q_n needs a 1-D sample, got shape {arr.shape}; pass one vector at a time")
    if arr.size == 0:
        raise ValueError("Q_n of an empty sample is undefined; pass at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError("Q_n needs finite values; drop or impute NaN / inf first")
    xs = np.sort(arr)
    if not math.isfinite(xs[-1] - xs[0]):
        raise ValueError("the sample's range overflows float64; rescale the values first")
    return xs


def _pad(xs: np.ndarray) -> np.ndarray:
    """Sorted sample with -inf / +inf sentinels, so that ``padded[p]`` is ``x_{p-1}``."""
    return np.concatenate(([-np.inf], xs, [np.inf]))


def _cuts(padded: np.ndarray, xi: np.ndarray, a: float) -> np.ndarray:
    """For each row value ``x_i`` in ``xi``: the number of ``j`` with ``fl(x_j - x_i) < a``.

    ``j -> fl(x_j - x_i)`` is non-decreasing over the sorted sample, so that set is a prefix of
    the columns.  ``searchsorted(xs, x_i + a)`` finds the prefix end up to rounding; every guess
    is checked on the computed differences, the wrong ones step over one run of tied values,
    and any still wrong are redone by an exact (vectorised) binary search.
    """
    xs = padded[1:-1]
    n = len(xs)
    pos = np.searchsorted(xs, xi + a, side="left")
    bad = _wrong_cuts(padded, xi, a, pos)
    if bad is None:
        return pos
    p = pos[bad]
    too_low = (padded[p + 1] - xi[bad]) < a  # x_p itself is still below a
    step_up = np.searchsorted(xs, padded[p + 1], side="right")
    step_down = np.searchsorted(xs, padded[p], side="left")
    pos[bad] = np.where(too_low, step_up, step_down)
    still = _wrong_cuts(padded, xi[bad], a, pos[bad])
    if still is None:
        return pos
    bad = bad[still]
    xb = xi[bad]
    lo = np.zeros(bad.size, dtype=np.int64)
    hi = np.full(bad.size, n, dtype=np.int64)
    while True:
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo + hi) // 2
        less = (padded[mid + 1] - xb) < a
        lo = np.where(open_ & less, mid + 1, lo)
        hi = np.where(open_ & ~less, mid, hi)
    pos[bad] = lo
    return pos


def _wrong_cuts(padded: np.ndarray, xi: np.ndarray, a: float, pos: np.ndarray) -> np.ndarray | None:
    """Indices where ``pos`` is not the end of the prefix ``{j : fl(x_j - x_i) < a}``, or None
    when every ``pos`` is right (the sentinels make positions 0 and n self-checking)."""
    ok = (padded[pos] - xi) < a  # x_{pos-1} is below a
    ok &= (padded[1:][pos] - xi) >= a  # x_pos is not
    if ok.all():
        return None
    return np.flatnonzero(~ok)


def _sample_size(total: int, enumerate_at: int, n: int) -> int:
    """Pivot sample size (ours; speed only).  A round keeps ~``2 Z / sqrt(s)`` of the
    candidates.  Plan the fewest rounds that reach the enumeration threshold with at most
    ``_SAMPLE_PER_N * n`` draws each and draw just enough for that plan (times
    ``_SAMPLE_SLACK``); in the last round also balance sampling against enumeration cost
    (``s ~ (3 total)^(2/3)`` minimises ``s + 2 Z total / sqrt(s)``)."""
    s_max = max(_SAMPLE_MIN, _SAMPLE_PER_N * n)
    shrink = math.sqrt(s_max) / (2.0 * _Z)  # best shrink factor per round
    excess = total / enumerate_at
    if shrink > 1.0 and excess > 1.0:
        rounds = max(1, math.ceil(math.log(excess) / math.log(shrink)))
        s = _SAMPLE_SLACK * (2.0 * _Z * excess ** (1.0 / rounds)) ** 2
        if rounds == 1:
            s = max(s, (3.0 * total) ** (2.0 / 3.0))
    else:
        s = s_max
    return int(min(total, max(_SAMPLE_MIN, min(s_max, s))))


def _window_cuts(padded: np.ndarray, xi: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 a: float) -> tuple[np.ndarray, int]:
    """``_cuts`` clipped to each row's window, and how many candidates lie below ``a``.

    Works through the rows in blocks of ``_BLOCK`` so that each block's arrays (and the slice
    of the sample its sorted thresholds touch) stay in cache.
    """
    out = np.empty_like(lo)
    below = 0
    for start in range(0, len(xi), _BLOCK):
        blk = slice(start, start + _BLOCK)
        cut = _cuts(padded, xi[blk], a)
        np.maximum(cut, lo[blk], out=cut)
        np.minimum(cut, hi[blk], out=cut)
        out[blk] = cut
        cut -= lo[blk]
        below += int(cut.sum())
    return out, below


def _kth_pairwise(xs: np.ndarray, k: int) -> float:
    """k-th smallest (1-based) of ``fl(xs[j] - xs[i])``, ``i < j``, for sorted ``xs``."""
    n = len(xs)
    rng = np.random.default_rng(_SEED)
    xi = xs[:-1]  # values x_i of the rows that still have candidates
    lo = np.arange(1, n, dtype=np.int64)  # window of row i: columns [lo_i, hi_i), initially j > i
    hi = np.full(n - 1, n, dtype=np.int64)
    kk = int(k)  # rank of the answer inside the current windows
    enumerate_at = max(_ENUM_PER_N * n, _ENUM_MIN)
    padded = _pad(xs)
    while True:
        width = hi - lo
        empty = width == 0
        if 4 * int(empty.sum()) > len(xi):  # drop empty rows once they are a quarter
            keep = ~empty
            xi, lo, hi, width = xi[keep], lo[keep], hi[keep], width[keep]
        total = int(width.sum())
        if total <= enumerate_at:
            starts = np.cumsum(width) - width
            owner = np.repeat(np.arange(len(xi)), width)
            cols = lo[owner] + (np.arange(total, dtype=np.int64) - starts[owner])
            vals = xs[cols] - xi[owner]
            return float(np.partition(vals, kk - 1)[kk - 1])
        # sample candidates uniformly at random and bracket rank kk with two pivots
        s = _sample_size(total, enumerate_at, n)
        if total == n * (n - 1) // 2:  # first round: every pair is a candidate
            i = rng.integers(0, n, size=s)
            j = rng.integers(0, n - 1, size=s)
            j += j >= i
            sample = np.abs(xs[j] - xs[i])
        else:
            ends = np.cumsum(width)
            u = np.sort(rng.integers(0, total, size=s))  # sorted keys: cache-friendly lookup
            r = np.searchsorted(ends, u, side="right")
            sample = xs[lo[r] + (u - (ends[r] - width[r]))] - xi[r]
        centre = kk / total * s
        half = _Z * math.sqrt(s)
        i_a = int(min(max(math.floor(centre - half), 0), s - 1))
        i_b = int(min(max(math.ceil(centre + half), 0), s - 1))
        part = np.partition(sample, [i_a, i_b])
        a, b = float(part[i_a]), float(part[i_b])
        cut_a, n_a = _window_cuts(padded, xi, lo, hi, a)  # [lo, cut_a): d < a
        cut_b, n_b = _window_cuts(padded, xi, lo, hi, float(np.nextafter(b, np.inf)))  # d <= b
        if kk <= n_a:
            hi = cut_a
        elif kk > n_b:
            kk -= n_b
            lo = cut_b
        else:
            if a == b:
                return a
            kk -= n_a
            lo, hi = cut_a, cut_b
        if int((hi - lo).sum()) < total:
            continue
        # no progress (heavy ties / unlucky sample): one three-way pivot always shrinks
        i_p = int(min(max(round(centre), 0), s - 1))
        p = float(np.partition(sample, i_p)[i_p])
        cut_lt, n_lt = _window_cuts(padded, xi, lo, hi, p)
        cut_le, n_le = _window_cuts(padded, xi, lo, hi, float(np.nextafter(p, np.inf)))
        if kk <= n_lt:
            hi = cut_lt
        elif kk > n_le:
            kk -= n_le
            lo = cut_le
        else:
            return p
