"""Protocol: influence densities of a target and a non-target (paper 000 Sec. 5.2, Fig. 5).

Paper 000's Fig. 5 shows, for one target and one non-target of the speech backdoor, the density
of a GAS influence vector over the training examples with the robust normal fitted to it (median
and Q_n, Sec. 5.2): a target's vector has a heavy upper tail (its D_adv), a non-target's does
not.  FIT (Alg. 2) ranks candidates by that tail's heaviness.

Per trial: one target drawn uniformly among the successful ones and one non-target drawn
uniformly among the clean test inputs (the same pair for every method); each method (a defense:
GAS, GAS-L, ...) scores every training example for both.  Recorded per query, over the training
examples labelled with the query's predicted label (``per_class_stats``, Sec. 5.2): median, Q_n,
a histogram of the values (``n_bins`` equal bins) and the values of D_adv, so that the figure is
drawn from records; metrics: the upper-tail heaviness of each (sigma_(n-kappa), the kappa-th
largest anomaly score, Sec. 5.2) and its difference target - non-target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.anomaly import robust_center_scale, standardize, stats_mask
from benchmark.api import MethodResult, Protocol
from benchmark.config import ConfigError
from benchmark.protocols.common import make_evidence
from benchmark.registry import protocols
from benchmark.trial import PreparedTrial

QUERIES = ("target", "non_target")


@dataclass(frozen=True)
class Params:
    kappa: int = 10  # reference-code ANOM_CUTOFF (paper 000 Sec. 5.2's kappa)
    n_bins: int = 60  # ours: histogram bins of the recorded densities
    per_class_stats: bool = True  # paper 000 Sec. 5.2: median and Q_n over examples labelled y_hat

    def __post_init__(self) -> None:
        if self.kappa < 1 or self.n_bins < 2:
            raise ConfigError(f"influence-density: kappa must be >= 1 and n_bins >= 2, got {self.kappa}, {self.n_bins}")


@dataclass
class State:
    inputs: torch.Tensor  # (2, ...): the target, then the non-target
    predicted: torch.Tensor
    target_index: int
    non_target_index: int


def upper_tail(sigma: np.ndarray, kappa: int) -> float:
    """sigma_(n - kappa): the kappa-th largest anomaly score (paper 000 Sec. 5.2)."""
    if len(sigma) < kappa:
        raise ValueError(f"kappa = {kappa} exceeds the {len(sigma)} training examples")
    return float(np.sort(sigma)[-kappa])


@protocols.register("influence-density",
                    "Influence densities of a target and a non-target with the robust normal (paper 000 Fig. 5)")
class InfluenceDensity(Protocol):
    Params = Params

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> State | None:
        if len(p.successful_targets) == 0:
            return None
        t = int(rng.choice(p.successful_targets))
        nt = int(rng.integers(len(p.non_targets.labels)))
        x = torch.cat([p.targets.inputs[t : t + 1], p.non_targets.inputs[nt : nt + 1]])
        return State(x, p.predict(x), t, nt)

    def evaluate(self, p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
        ev = make_evidence(p, method.requires, rng, state.inputs, state.predicted)
        scores = np.asarray(method.score(ev), dtype=np.float64)
        n = len(p.train.labels)
        if scores.shape != (n, 2):
            raise ValueError(f"influence-density needs an (n_train, 2) score matrix, got {scores.shape}")
        prm, labels, is_adv = self.params, p.train.labels.numpy(), p.is_adv
        metrics, extra = {}, {"target_index": state.target_index, "non_target_index": state.non_target_index}
        for j, name in enumerate(QUERIES):
            v, yhat = scores[:, j], int(state.predicted[j])
            mask = stats_mask(labels, yhat, prm.per_class_stats)
            center, scale = robust_center_scale(v[mask])
            sigma = standardize(v, center, scale)
            metrics[f"upper_tail_{name}"] = upper_tail(sigma, prm.kappa)
            counts, edges = np.histogram(v[mask], bins=prm.n_bins)
            extra[name] = {"predicted_label": yhat, "median": center, "qn": scale, "n_stats": int(mask.sum()),
                           "hist_counts": counts.tolist(), "hist_edges": edges.tolist(),
                           "adv_values": v[is_adv & mask].tolist()}
        metrics["upper_tail_gap"] = metrics["upper_tail_target"] - metrics["upper_tail_non_target"]
        return MethodResult(metrics=metrics, scores=scores[:, 0], granted=sorted(ev.granted), extra=extra)
