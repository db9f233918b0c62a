"""The random control: i.i.d. uniform scores from the method's own generator."""
from __future__ import annotations

import numpy as np

from defenses.base import Defense, Evidence, NoParams


class RandomScores(Defense):
    """Uniformly random scores (the control every removal table needs)."""

    Config = NoParams
    requires = frozenset()

    def score(self, evidence: Evidence) -> np.ndarray:
        return evidence.rng.random(len(evidence.train_labels))


class NoDefense(Defense):
    """No defense: for protocols that measure the attack alone (never asked for scores)."""

    Config = NoParams
    requires = frozenset()

    def score(self, evidence: Evidence) -> np.ndarray:
        raise RuntimeError("the 'none' defense has no scores; use it only with the attack-success protocol")
