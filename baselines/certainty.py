"""Most / least certain target-identification baselines (paper 000 Sec. 6.3).

The loss of each candidate w.r.t. its *predicted* label under the final model.  *Most certain*
ranks candidates in ascending order of loss (lowest loss first: score = -loss); *least certain*
in descending order (score = loss).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.config import ConfigError
from benchmark.training.losses import per_example_loss
from benchmark.api import Evidence, TargetRanker
from benchmark.registry import target_rankers


@dataclass
class CertaintyConfig:
    batch_size: int = 512  # ours: forward-pass batch size (no effect on the scores)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@torch.no_grad()
def predicted_label_loss(evidence: Evidence, batch_size: int = 512) -> np.ndarray:
    """``(n_queries,)`` float64 loss of each query w.r.t. its predicted label."""
    model = evidence.model()
    qx, qy = evidence.queries()
    out = [per_example_loss(model(qx[i : i + batch_size]).double(), qy[i : i + batch_size])
           for i in range(0, len(qy), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0)


@target_rankers.register("most-certain", "Lowest loss w.r.t. the predicted label first (paper 000 Sec. 6.3)")
class MostCertain(TargetRanker):
    """Most certain (paper 000 Sec. 6.3): ascending loss w.r.t. the predicted label."""

    Config = CertaintyConfig
    requires = frozenset({"model", "queries"})

    def rank(self, evidence: Evidence) -> np.ndarray:
        return -predicted_label_loss(evidence, self.config.batch_size)


@target_rankers.register("least-certain", "Highest loss w.r.t. the predicted label first (paper 000 Sec. 6.3)")
class LeastCertain(TargetRanker):
    """Least certain (paper 000 Sec. 6.3): descending loss w.r.t. the predicted label."""

    Config = CertaintyConfig
    requires = frozenset({"model", "queries"})

    def rank(self, evidence: Evidence) -> np.ndarray:
        return predicted_label_loss(evidence, self.config.batch_size)
