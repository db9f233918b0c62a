"""``top-k``: remove the k highest scores, or ``factor * eps N`` (paper 001 Sec. 4.1: 1.5 eps N)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from benchmark.api import RemovalRule
from benchmark.config import ConfigError
from benchmark.registry import removal_rules


def top_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` highest scores; ties at the cut go to the lower index (stable sort)."""
    mask = np.zeros(len(scores), dtype=bool)
    k = max(0, min(int(k), len(scores)))
    if k:
        mask[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]] = True
    return mask


@dataclass(frozen=True)
class TopKConfig:
    k: int | None = None
    factor: float = 1.5  # paper 001 Sec. 4.1: remove 1.5 eps N when k is None

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 0:
            raise ConfigError("top-k: k must be >= 0")
        if self.factor < 0:
            raise ConfigError("top-k: factor must be >= 0")


@removal_rules.register("top-k", "Remove the k highest scores, or factor * eps N (paper 001: 1.5 eps N)")
class TopK(RemovalRule):
    Config = TopKConfig

    @property
    def needs_budget(self) -> bool:
        return self.config.k is None

    def describe(self) -> str:
        return f"k={self.config.k}" if self.config.k is not None else f"{self.config.factor:g}epsN"

    def select(self, scores, rng, budget=None):
        if self.config.k is not None:
            return top_mask(scores, self.config.k)
        if budget is None:
            raise ValueError("top-k without k removes factor * eps N and needs the poisoning budget")
        return top_mask(scores, int(math.floor(self.config.factor * budget)))
