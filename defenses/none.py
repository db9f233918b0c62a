"""The ``none`` defense: measures the attack alone (the attack-success protocol); never scores."""
from __future__ import annotations

import numpy as np

from benchmark.api import Defense, Evidence, NoParams
from benchmark.registry import defenses


@defenses.register("none", "No defense: measures the attack alone (attack-success protocol)")
class NoDefense(Defense):
    """No defense: for protocols that measure the attack alone (never asked for scores)."""

    Config = NoParams
    requires = frozenset()
    scores_examples = False

    def score(self, evidence: Evidence) -> np.ndarray:
        raise RuntimeError("the 'none' defense has no scores; use it only with the attack-success protocol")
