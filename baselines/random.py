"""Random target-identification baseline: i.i.d. uniform scores from ``evidence.rng``
(reference code ``targ_detect_baselines.py`` has a random score)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.api import Evidence, TargetRanker
from benchmark.registry import target_rankers


@dataclass
class RandomConfig:
    pass


@target_rankers.register("random", "Uniformly random scores from the trial's rng")
class RandomRanker(TargetRanker):
    """Random ranking of the analysis set (uniform scores drawn from ``evidence.rng``)."""

    Config = RandomConfig
    requires = frozenset({"queries"})

    def rank(self, evidence: Evidence) -> np.ndarray:
        return evidence.rng.random(len(evidence.queries()[1]))
