"""The removal-rule contract: one score per training example -> a boolean removal mask, for the
remove-and-retrain protocols (paper 000 Alg. 3 and Fig. 4, paper 001 Sec. 4.1, random controls).

Rules are a registered kind (:data:`benchmark.registry.removal_rules`); protocols take a removal
spec ``{"name": ..., "params": {...}}`` and look the rule up, so a new rule is one file.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from benchmark.config import build


class RemovalRule(ABC):
    """Base class of every removal rule.  ``Config`` is a dataclass (unknown keys are an error);
    :attr:`needs_budget` says whether :meth:`select` needs the oracle count eps*N."""

    Config: ClassVar[type]

    def __init__(self, **params: Any) -> None:
        self.config = build(self.Config, params, what=f"removal rule {type(self).__name__}")

    @property
    def needs_budget(self) -> bool:
        """Whether :meth:`select` needs ``budget`` (oracle knowledge of eps*N, or a count to
        match for a control)."""
        return False

    def with_params(self, **changes: Any) -> "RemovalRule":
        """A copy with some parameters changed (e.g. an annealed cutoff)."""
        return type(self)(**{**dataclasses.asdict(self.config), **changes})

    def describe(self) -> str:
        """Short label of this rule's setting, used in metric names (``metric@<label>``)."""
        return ",".join(f"{k}={v}" for k, v in dataclasses.asdict(self.config).items())

    @abstractmethod
    def select(self, scores: np.ndarray, rng: np.random.Generator, budget: int | None = None) -> np.ndarray:
        """Boolean mask of the examples to remove (higher score = more suspicious)."""
