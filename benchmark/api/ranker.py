"""The target-identification contract (paper 000 Sec. 5 and 6.3).

A :class:`TargetRanker` looks at the analysis set -- the Evidence's *queries*: test inputs with
the final model's predicted labels -- and returns one score per query; higher means more likely
to be the target of a training-set attack.  The harness turns the scores into AUPRC / target
rank; rankers never see which queries are targets.

Like a :class:`benchmark.api.Defense`, a ranker has a ``Config`` dataclass (unknown keys are an
error) and declares in ``requires`` which evidence it needs (a subset of
:data:`benchmark.api.NEEDS`); the protocol withholds everything else.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from benchmark.config import build
from benchmark.api.evidence import NEEDS, Evidence


class TargetRanker(ABC):
    """Base class of every target-identification method (FIT and the Sec. 6.3 baselines)."""

    Config: ClassVar[type]
    requires: frozenset[str] = frozenset({"queries"})

    def __init__(self, **params: Any) -> None:
        self.config = build(self.Config, params, what=f"target ranker {type(self).__name__}")
        self._check_requires()

    def _check_requires(self) -> None:
        unknown = set(self.requires) - set(NEEDS)
        if unknown:
            raise TypeError(f"{type(self).__name__}.requires has unknown needs {sorted(unknown)}; "
                            f"valid needs: {sorted(NEEDS)}")
        if "queries" not in self.requires:
            raise TypeError(f"{type(self).__name__}.requires must include 'queries' (the analysis set)")

    @abstractmethod
    def rank(self, evidence: Evidence) -> np.ndarray:
        """``(n_queries,)`` float scores; higher = more likely a target."""

    def __call__(self, evidence: Evidence) -> np.ndarray:
        """:meth:`rank` plus a check of the output's shape and values."""
        scores = np.asarray(self.rank(evidence), dtype=np.float64)
        n_queries = len(evidence.queries()[1])
        if scores.shape != (n_queries,):
            raise ValueError(f"{type(self).__name__}.rank returned shape {scores.shape}; "
                             f"expected ({n_queries},), one score per query")
        if np.isnan(scores).any():
            raise ValueError(f"{type(self).__name__}.rank returned NaN scores")
        return scores

