"""Metrics.  The harness computes every metric; methods only return scores.

Tie handling: ``auprc`` is average precision (``sklearn.metrics.average_precision_score``),
which evaluates precision/recall at each *distinct* score threshold, so examples with tied scores
enter the ranking together: AP does not depend on how tied examples are ordered (neither the
optimistic nor the pessimistic order).  ``target_rank`` uses the expected rank under random
tie-breaking.  Non-finite scores are an error (a method must not hide failures as NaN).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Direction of every metric the harness reports (True = higher is better).
HIGHER_IS_BETTER: dict[str, bool] = {
    "auprc": True,
    "target_rank": False,
    "attack_success_rate": False,  # after a defense; for the attack itself see ``asr_no_defense``
    "asr_no_defense": True,
    "clean_accuracy": True,
    "clean_accuracy_change": True,
    "pct_adv_removed": True,
    "pct_clean_removed": False,
    "retrain_rounds": False,
    "misclassification_rate": True,
    "asr_all_targets": False,
    # influence-density (Fig. 5): a heavier target tail and a lighter non-target tail is better
    "upper_tail_target": True,
    "upper_tail_non_target": False,
    "upper_tail_gap": True,
}


def higher_is_better(name: str) -> bool:
    """Direction of a metric; ``control_<m>`` and ``<m>@<setting>`` take the direction of ``m``."""
    base = name.removeprefix("control_").split("@", 1)[0]
    if base not in HIGHER_IS_BETTER:
        raise KeyError(f"metric {name!r} has no declared direction in benchmark.metrics.HIGHER_IS_BETTER")
    return HIGHER_IS_BETTER[base]


class MetricError(ValueError):
    pass


def _check_scores(scores: np.ndarray, n: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (n,):
        raise MetricError(f"expected {n} scores, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        bad = int((~np.isfinite(scores)).sum())
        raise MetricError(f"{bad} non-finite score(s); a method must return finite scores")
    return scores


def auprc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (positives = adversarial)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(is_positive, dtype=bool)
    s = _check_scores(scores, len(y))
    if not y.any():
        raise MetricError("AUPRC is undefined without positive examples")
    return float(average_precision_score(y, s))


def target_rank(is_target: np.ndarray, scores: np.ndarray) -> float:
    """Rank (1 = first) of the best-ranked target; ties broken at random in expectation."""
    y = np.asarray(is_target, dtype=bool)
    s = _check_scores(scores, len(y))
    if not y.any():
        raise MetricError("target rank is undefined without a target")
    best = s[y].max()
    others = s[~y]
    return float(1 + (others > best).sum() + 0.5 * (others == best).sum())


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    p, y = np.asarray(predicted), np.asarray(labels)
    if p.shape != y.shape:
        raise MetricError(f"shape mismatch {p.shape} vs {y.shape}")
    if len(y) == 0:
        raise MetricError("accuracy of an empty set is undefined")
    return float((p == y).mean())


def attack_success_rate(predicted: np.ndarray, y_adv: np.ndarray) -> float:
    """Fraction of targets predicted as their adversarial label."""
    return accuracy(predicted, y_adv)


def removal_percentages(removed: np.ndarray, is_adv: np.ndarray) -> tuple[float, float]:
    """(% of D_adv removed, % of D_cl removed) for a boolean removal mask."""
    r, a = np.asarray(removed, dtype=bool), np.asarray(is_adv, dtype=bool)
    if r.shape != a.shape:
        raise MetricError(f"shape mismatch {r.shape} vs {a.shape}")
    pct_adv = 100.0 * (r & a).sum() / a.sum() if a.any() else float("nan")
    pct_cl = 100.0 * (r & ~a).sum() / (~a).sum() if (~a).any() else float("nan")
    return float(pct_adv), float(pct_cl)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 when n == 1
    ci_low: float  # 95% t-interval of the mean
    ci_high: float

    def fmt(self, digits: int = 3) -> str:
        if self.n == 0:
            return "–"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def fmt_ci(self, digits: int = 3) -> str:
        if self.n < 2:
            return "–"
        return f"[{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"


def summarize(values: list[float] | np.ndarray, confidence: float = 0.95) -> Summary:
    """Mean, sample std and a Student-t confidence interval of the mean."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    n = len(v)
    if n == 0:
        return Summary(0, float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(v.mean())
    if n == 1:
        return Summary(1, mean, 0.0, float("nan"), float("nan"))
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def paired_difference(a: list[float], b: list[float], confidence: float = 0.95) -> Summary:
    """Summary of the per-trial differences a_i - b_i (paired t-interval)."""
    if len(a) != len(b):
        raise MetricError("paired difference needs the same trials on both sides")
    return summarize([x - y for x, y in zip(a, b)], confidence)
