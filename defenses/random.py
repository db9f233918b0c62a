"""The random control: i.i.d. uniform scores from the method's own generator."""
from __future__ import annotations

import numpy as np

from benchmark.api import Defense, Evidence, NoParams
from benchmark.registry import defenses


@defenses.register("random", "Uniformly random scores: the control for removal protocols")
class RandomScores(Defense):
    """Uniformly random scores (the control every removal table needs)."""

    Config = NoParams
    requires = frozenset()

    def score(self, evidence: Evidence) -> np.ndarray:
        return evidence.rng.random(len(evidence.train_labels))
