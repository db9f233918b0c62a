"""Maximum / minimum k-NN distance target-identification baselines (paper 000 Sec. 6.3).

Inspired by Deep k-NN (Peri et al.): for each candidate, the L2 distance between its
penultimate-layer representation ``model.features(x)`` and that of its ``k``-th nearest
*training* example.  *Maximum k-NN distance* ranks the largest distance first (outliers,
sparse regions); *minimum k-NN distance* is the reverse ordering (dense regions).
``k = 10``: reference code (``targ_detect_baselines.py`` uses the upper-tail count kappa = 10);
the paper does not state k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.config import ConfigError
from benchmark.api import Evidence, TargetRanker
from benchmark.features import penultimate_features  # noqa: F401  (re-exported: it lived here)
from benchmark.registry import target_rankers


@dataclass
class KNNConfig:
    k: int = 10  # reference-code (targ_detect_baselines.py: distance to the 10th nearest neighbour)
    batch_size: int = 512  # ours: forward-pass batch size (no effect on the scores)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


def kth_neighbour_distance(queries: torch.Tensor, train: torch.Tensor, k: int,
                           chunk_elems: int = 4_000_000) -> np.ndarray:
    """``(n_queries,)`` L2 distance from each query row to its ``k``-th nearest row of ``train``."""
    if k > len(train):
        raise ValueError(f"k={k} exceeds the {len(train)} training examples; lower k")
    q = queries.double()
    t = train.double()
    t_sq = (t * t).sum(dim=1)
    step = max(1, chunk_elems // max(len(t), 1))
    out = []
    for i in range(0, len(q), step):
        qc = q[i : i + step]
        d2 = (qc * qc).sum(dim=1, keepdim=True) + t_sq[None, :] - 2.0 * (qc @ t.T)
        out.append(d2.clamp_min_(0.0).kthvalue(k, dim=1).values.sqrt())
    return torch.cat(out).numpy() if out else np.zeros(0)


class _KNNDistance(TargetRanker):
    Config = KNNConfig
    requires = frozenset({"model", "queries"})
    sign = 1.0

    def rank(self, evidence: Evidence) -> np.ndarray:
        model = evidence.model()
        qx, _ = evidence.queries()
        bs = self.config.batch_size
        f_train = penultimate_features(model, evidence.train_inputs, bs)
        f_query = penultimate_features(model, qx, bs)
        return self.sign * kth_neighbour_distance(f_query, f_train, self.config.k)


@target_rankers.register(
    "max-knn", "Largest L2 penultimate-feature distance to the k-th (10th) nearest training example "
               "first (paper 000 Sec. 6.3)")
class MaxKNNDistance(_KNNDistance):
    """Maximum k-NN distance (paper 000 Sec. 6.3): largest penultimate-feature distance to the
    k-th nearest training example ranks first."""

    sign = 1.0


@target_rankers.register(
    "min-knn", "Smallest L2 penultimate-feature distance to the k-th (10th) nearest training example "
               "first (paper 000 Sec. 6.3)")
class MinKNNDistance(_KNNDistance):
    """Minimum k-NN distance (paper 000 Sec. 6.3): smallest distance to the k-th nearest
    training example ranks first."""

    sign = -1.0
