"""``random``: remove k examples uniformly at random (the control of every removal protocol)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.api import RemovalRule
from benchmark.config import ConfigError
from benchmark.registry import removal_rules


@dataclass(frozen=True)
class RandomConfig:
    k: int | None = None  # None: as many as ``budget`` (a control matching a method's count)

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 0:
            raise ConfigError("random removal: k must be >= 0")


@removal_rules.register("random", "Remove k examples uniformly at random (the control)")
class RandomRemoval(RemovalRule):
    Config = RandomConfig

    @property
    def needs_budget(self) -> bool:
        return self.config.k is None

    def describe(self) -> str:
        return f"random k={self.config.k}" if self.config.k is not None else "random"

    def select(self, scores, rng, budget=None):
        k = self.config.k if self.config.k is not None else budget
        if k is None:
            raise ValueError("random removal needs k or a count to match")
        mask = np.zeros(len(scores), dtype=bool)
        mask[rng.choice(len(scores), size=min(int(k), len(scores)), replace=False)] = True
        return mask
