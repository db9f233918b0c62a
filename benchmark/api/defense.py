"""The defense contract: a method scores every training example; the harness computes metrics.

A defense declares what it needs in ``requires``; a protocol hands it an :class:`Evidence`
holding only those things (asking for anything else is an error), and the result record says
what the method was given.

Score shapes:

* a defense that requires ``"queries"`` returns ``(n_train, n_queries)``: column ``j`` scores every
  training example's influence on (suspicion for) query ``j``;
* otherwise it returns ``(n_train,)``.

Higher always means more suspicious / more influential.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from benchmark.api.evidence import NEEDS, Evidence
from benchmark.config import build


class Defense(ABC):
    """Base class of every defense.  Subclasses set ``Config`` (a dataclass of parameters; an
    unknown key is an error) and ``requires`` (a subset of :data:`NEEDS`)."""

    Config: ClassVar[type]
    requires: ClassVar[frozenset[str]] = frozenset({"model"})
    #: False only for the ``none`` defense, which measures the attack alone and never scores.
    scores_examples: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        unknown = set(self.requires) - set(NEEDS)
        if unknown:
            raise TypeError(f"{type(self).__name__}.requires has unknown needs {sorted(unknown)}")
        self.config = build(self.Config, params, what=f"defense {type(self).__name__}")

    @property
    def per_query(self) -> bool:
        return "queries" in self.requires

    @abstractmethod
    def score(self, evidence: Evidence) -> np.ndarray:
        """Scores for every training example (see module docstring for the shape)."""


@dataclass
class NoParams:
    """Config of a method without parameters."""
