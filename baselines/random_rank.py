"""Random target-identification baseline: i.i.d. uniform scores from ``evidence.rng``
(reference code ``targ_detect_baselines.py`` has a random score)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baselines.base import TargetRanker
from defenses.base import Evidence


@dataclass
class RandomConfig:
    pass


class RandomRanker(TargetRanker):
    """Random ranking of the analysis set (uniform scores drawn from ``evidence.rng``)."""

    Config = RandomConfig
    requires = frozenset({"queries"})

    def rank(self, evidence: Evidence) -> np.ndarray:
        return evidence.rng.random(len(evidence.queries()[1]))
