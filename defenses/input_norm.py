"""``input-norm``: a trivial scorer, the L2 norm of each training input (as the model sees it).

One of the trivial baselines (with ``loss`` and ``grad-norm``) a benchmark task must keep well
below the ceiling before influence estimators are measured on it (issue 14, item 5): if a
one-line statistic already separates D_adv, the task cannot tell methods apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.api import Defense, Evidence
from benchmark.registry import defenses


@dataclass
class InputNormConfig:
    negate: bool = False  # True: smallest norm first (the other direction of the same statistic)


@defenses.register("input-norm", "Trivial baseline: L2 norm of each training input (higher = more suspicious)")
class InputNorm(Defense):
    Config = InputNormConfig
    requires = frozenset()

    def score(self, evidence: Evidence) -> np.ndarray:
        x = evidence.train_inputs
        s = x.reshape(len(x), -1).double().norm(dim=1).numpy()
        return -s if self.config.negate else s
