"""``threshold``: remove every example whose score is >= zeta (paper 000 Alg. 3, line 6)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.api import RemovalRule
from benchmark.registry import removal_rules


@dataclass(frozen=True)
class ThresholdConfig:
    zeta: float


@removal_rules.register("threshold", "Remove examples whose score is >= zeta (paper 000 Alg. 3)")
class Threshold(RemovalRule):
    Config = ThresholdConfig

    def describe(self) -> str:
        return f"zeta={self.config.zeta:g}"

    def select(self, scores, rng, budget=None):
        return np.asarray(scores, dtype=np.float64) >= self.config.zeta
