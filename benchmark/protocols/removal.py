"""Removal rules: a registered kind that turns one score per training example into a removal
mask, for the remove-and-retrain protocols.

* ``threshold``: remove every example whose score is >= ``zeta`` (paper 000 Alg. 3, line 6,
  applied to anomaly scores sigma),
* ``top-k``: remove the ``k`` highest-scored examples, or ``factor * eps N`` of them when
  ``k`` is None (paper 001 Sec. 4.1 removes 1.5 eps N, which needs the poisoning budget),
* ``top-percent``: remove the top ``p`` percent (paper 000 Sec. 4.5, Fig. 4),
* ``random``: remove ``k`` examples uniformly at random (the control).

Ties at the cut are broken by example index (stable sort), so the mask is deterministic.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from benchmark.config import build
from benchmark.registry import removal_rules


class RemovalRule(ABC):
    Config: ClassVar[type]
    needs_budget: ClassVar[bool] = False  # oracle knowledge of eps*N

    def __init__(self, **params: Any) -> None:
        self.config = build(self.Config, params, what=f"removal rule {type(self).__name__}")

    @abstractmethod
    def select(self, scores: np.ndarray, rng: np.random.Generator, budget: int | None = None) -> np.ndarray:
        """Boolean mask of the examples to remove."""


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(len(scores), dtype=bool)
    k = max(0, min(int(k), len(scores)))
    if k:
        mask[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]] = True
    return mask


@dataclass(frozen=True)
class ThresholdConfig:
    zeta: float


@removal_rules.register("threshold", "Remove examples whose score is >= zeta (paper 000 Alg. 3)")
class Threshold(RemovalRule):
    Config = ThresholdConfig

    def select(self, scores, rng, budget=None):
        return np.asarray(scores, dtype=np.float64) >= self.config.zeta


@dataclass(frozen=True)
class TopKConfig:
    k: int | None = None
    factor: float = 1.5  # paper 001 Sec. 4.1: remove 1.5 eps N when k is None

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 0:
            raise ValueError("k must be >= 0")


@removal_rules.register("top-k", "Remove the k highest scores, or factor * eps N (paper 001: 1.5 eps N)")
class TopK(RemovalRule):
    Config = TopKConfig

    @property
    def needs_budget(self) -> bool:  # type: ignore[override]
        return self.config.k is None

    def select(self, scores, rng, budget=None):
        if self.config.k is not None:
            return _top(scores, self.config.k)
        if budget is None:
            raise ValueError("top-k without k removes factor * eps N and needs the poisoning budget")
        return _top(scores, int(math.floor(self.config.factor * budget)))


@dataclass(frozen=True)
class TopPercentConfig:
    percent: float

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError("percent must be in [0, 100]")


@removal_rules.register("top-percent", "Remove the top p% of the training set (paper 000 Sec. 4.5, Fig. 4)")
class TopPercent(RemovalRule):
    Config = TopPercentConfig

    def select(self, scores, rng, budget=None):
        return _top(scores, int(round(self.config.percent / 100.0 * len(scores))))


@dataclass(frozen=True)
class RandomConfig:
    k: int | None = None  # None: as many as ``budget`` (used by controls to match a method)


@removal_rules.register("random", "Remove k examples uniformly at random (the control)")
class RandomRemoval(RemovalRule):
    Config = RandomConfig

    def select(self, scores, rng, budget=None):
        k = self.config.k if self.config.k is not None else budget
        if k is None:
            raise ValueError("random removal needs k or a count to match")
        mask = np.zeros(len(scores), dtype=bool)
        mask[rng.choice(len(scores), size=min(int(k), len(scores)), replace=False)] = True
        return mask
