"""Qualitative claims of the papers, tested on stored records (issue 14 item 3).

A :class:`Claim` is a statement of a paper with where it is made, and a list of *checks*, each a
per-trial comparison on one experiment:

* :class:`Beats` -- method ``a`` scores better than method ``b`` on ``metric`` (paired per-trial
  difference ``a - b`` in the metric's better direction, with its 95 % t-interval);
* :class:`Bound` -- method ``a``'s mean ``metric`` is on the right side of ``limit`` (inclusive);
* :class:`Stable` -- the mean ``metric`` of several methods (e.g. FIT at several kappa) varies by
  at most ``max_range``.

A check *holds* when its mean difference points the claimed way, and holds *significantly* when
its 95 % interval excludes 0 (for ``Bound``: when the interval lies on the claimed side).  A
claim holds when every one of its checks that could be evaluated holds; a check whose records
are absent (an experiment not run at this scale, an attack not successful) is reported as not
evaluated, never as holding.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from benchmark.metrics import higher_is_better, paired_difference, summarize
from benchmark.store import Record


@dataclass(frozen=True)
class Beats:
    experiment: str
    a: str
    b: str
    metric: str

    def describe(self) -> str:
        return f"{self.a} vs {self.b} ({self.metric})"


@dataclass(frozen=True)
class Bound:
    experiment: str
    a: str
    metric: str
    limit: float
    below: bool  # True: mean <= limit is claimed; False: mean >= limit

    def describe(self) -> str:
        return f"{self.a}: mean {self.metric} {'<=' if self.below else '>='} {self.limit:g}"


@dataclass(frozen=True)
class Stable:
    """The mean ``metric`` of ``methods`` varies by at most ``max_range`` (max - min of means)."""

    experiment: str
    methods: tuple[str, ...]
    metric: str
    max_range: float

    def describe(self) -> str:
        return f"range of {self.metric} over {', '.join(self.methods)} <= {self.max_range:g}"


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    where: str  # paper section / table
    checks: tuple[Beats | Bound | Stable, ...]


@dataclass
class CheckResult:
    claim: Claim
    check: Beats | Bound | Stable
    n: int
    mean: float | None  # Beats: mean better-direction difference; Bound: mean of the metric
    lo: float | None
    hi: float | None
    holds: bool | None  # None: not evaluated
    significant: bool | None


def _ci(lo: float, hi: float) -> tuple[float | None, float | None]:
    return (None, None) if math.isnan(lo) else (lo, hi)


def _per_trial(records: Iterable[Record], experiment: str, method: str, metric: str,
               scale: str | None) -> dict[int, float]:
    return {r.trial: float(r.metric(metric)) for r in records
            if r.experiment == experiment and r.method == method and r.status == "ok"
            and (scale is None or r.scale == scale) and r.metric(metric) is not None
            and not math.isnan(float(r.metric(metric)))}


def evaluate(claims: Iterable[Claim], records: list[Record], scale: str | None = None,
             excluded: Iterable[str] = ()) -> list[CheckResult]:
    """Every check of every claim on ``records`` (``excluded``: experiments whose attack did not
    succeed, whose checks are not evaluated)."""
    excluded = set(excluded)
    out = []
    for claim in claims:
        for chk in claim.checks:
            if chk.experiment in excluded:
                out.append(CheckResult(claim, chk, 0, None, None, None, None, None))
                continue
            if isinstance(chk, Stable):
                means = []
                for m in chk.methods:
                    v = list(_per_trial(records, chk.experiment, m, chk.metric, scale).values())
                    if v:
                        means.append(sum(v) / len(v))
                if len(means) < 2:
                    out.append(CheckResult(claim, chk, 0, None, None, None, None, None))
                else:
                    rng = max(means) - min(means)
                    out.append(CheckResult(claim, chk, len(means), rng, None, None, rng <= chk.max_range, None))
                continue
            va = _per_trial(records, chk.experiment, chk.a, chk.metric, scale)
            if isinstance(chk, Beats):
                vb = _per_trial(records, chk.experiment, chk.b, chk.metric, scale)
                common = sorted(set(va) & set(vb))
                if not common:
                    out.append(CheckResult(claim, chk, 0, None, None, None, None, None))
                    continue
                sign = 1.0 if higher_is_better(chk.metric) else -1.0
                d = paired_difference([sign * va[t] for t in common], [sign * vb[t] for t in common])
                lo, hi = _ci(d.ci_low, d.ci_high)
                out.append(CheckResult(claim, chk, d.n, d.mean, lo, hi, d.mean > 0, lo is not None and lo > 0))
            else:
                vals = list(va.values())
                if not vals:
                    out.append(CheckResult(claim, chk, 0, None, None, None, None, None))
                    continue
                s = summarize(vals)
                holds = s.mean <= chk.limit if chk.below else s.mean >= chk.limit
                lo, hi = _ci(s.ci_low, s.ci_high)
                sig = lo is not None and (hi <= chk.limit if chk.below else lo >= chk.limit)
                out.append(CheckResult(claim, chk, s.n, s.mean, lo, hi, holds, sig))
    return out


def claim_rows(results: list[CheckResult]) -> tuple[list[str], list[list[str]]]:
    """A table: per claim a verdict row (holds / does not hold / not evaluated), then one row per
    evaluated check; checks without records are counted in the verdict, not listed."""
    headers = ["claim / experiment", "where / check", "n", "paired diff. or mean [95% CI]", "holds"]
    rows: list[list[str]] = []
    by_claim: dict[str, list[CheckResult]] = defaultdict(list)
    for r in results:
        by_claim[r.claim.id].append(r)
    for rs in by_claim.values():
        claim = rs[0].claim
        done = [r for r in rs if r.holds is not None]
        missing = len(rs) - len(done)
        if not done:
            verdict = "not evaluated"
        elif all(r.holds for r in done):
            verdict = "holds" + (", every check significantly" if all(r.significant for r in done) else "")
        else:
            verdict = f"does not hold: {sum(not r.holds for r in done)} of {len(done)} checks fail"
        if missing and done:
            verdict += f" ({missing} checks not evaluated)"
        rows.append([claim.text, claim.where, "", "", verdict])
        for r in done:
            if isinstance(r.check, Stable):
                cell = f"{r.mean:.3f} (range over {r.n} methods)"
            else:
                ci = "–" if r.lo is None else f"[{r.lo:+.3f}, {r.hi:+.3f}]"
                cell = f"{r.mean:+.3f} {ci}" if isinstance(r.check, Beats) else f"{r.mean:.3f} {ci}"
            mark = ("yes" if r.holds else "no") + (" (significant)" if r.significant else "")
            rows.append([f"  {r.check.experiment}", r.check.describe(), str(r.n), cell, mark])
    return headers, rows
