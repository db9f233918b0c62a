"""The influence graph (paper 001 Sec. 3): training examples are nodes, the symmetrised pairwise
influence (Eq. 7) the edge weights, and the poisons are sought as the maximum-average subgraph
of ``eps N`` nodes (Eq. 9) by greedy search (Alg. 1) or agglomerative search (Alg. 2).

Registered here (a family file):

* ``influence-graph-greedy`` / ``influence-graph-agglomerative`` -- paper 001: the edge weights
  come from Eq. 4's pairwise influence on the final model
  (:func:`~defenses.influence.pairwise.pairwise_influence`, the damped inverse Hessian over
  ``layers`` by ``preconditioner``), or, with ``influence="word"``, from Eqs. 5-6's word-level
  influence for text (:func:`~defenses.influence.word_influence.word_influence`);
* ``influence-graph-gas-greedy`` / ``influence-graph-gas-agglomerative`` -- **ours, not in paper
  001**: the same graph and searches on the GAS similarity between training examples over the
  recorded checkpoints (:func:`~defenses.influence.pairwise.pairwise_gas`, paper 000 Eq. 12).

Every example gets a score (the search's rank score: the found subgraph first, in selection
order, then the rest by their summed weight to it; :mod:`defenses.influence.graph_search`), so
the ``top-k`` rule removes the paper's ``1.5 eps N`` and AUPRC is defined.  The subgraph size is
the poisoning budget ``eps N`` (oracle knowledge, as for every paper-001 method).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from benchmark.api import Defense, Evidence
from benchmark.config import ConfigError
from benchmark.registry import defenses
from defenses.influence.graph_search import (AVERAGES, NEGATIVES, PRUNES, STOPS, SearchResult, agglomerative_search,
                                             greedy_search, symmetrize)
from defenses.influence.pairwise import PRECONDITIONERS, pairwise_gas, pairwise_influence
from defenses.influence.word_influence import word_influence

INFLUENCES = ("example", "word")


def _check_search_options(c) -> None:
    """The graph and search options every influence-graph config shares."""
    for name, value, allowed in (("negative", c.negative, NEGATIVES), ("stop", c.stop, STOPS),
                                 ("prune", c.prune, PRUNES)):
        if value not in allowed:
            raise ConfigError(f"influence graph: {name} must be one of {list(allowed)}, got {value!r}")
    if c.average is not None and c.average not in AVERAGES:
        raise ConfigError(f"influence graph: average must be one of {list(AVERAGES)} or None, got {c.average!r}")


@dataclass
class GraphConfig:
    """``layers``: the Hessian's parameter scope (``"all"`` or names; required, as for ``if``).
    ``preconditioner`` / ``damping``: paper 001 gives neither (ours: the exact damped Hessian,
    damping 0.01).  ``negative``: Eq. 7's weights as printed (``keep``) or clipped at 0 (ours).
    ``average``: Eq. 9's average over edges (greedy default) or Alg. 2 line 8's over nodes
    (agglomerative default); ``stop`` / ``prune``: Alg. 2's readings (graph_search docstring)."""

    layers: str | Sequence[str] | None = None
    preconditioner: str = "exact"  # ours (paper 001 states no solver)
    damping: float | None = 0.01  # ours
    negative: str = "keep"  # paper 001 Eq. 7 as printed
    average: str | None = None  # None: the search's own default (paper 001 Eq. 9 / Alg. 2 line 8)
    stop: str = "reach"  # paper 001 Alg. 2: "terminates until the size of the merged graph reaches eps N"
    prune: str = "remove"  # paper 001 Sec. 3.3: "selecting the node that causes the least score reduction"
    #: "example": Eq. 4 (paper 001: "for vision tasks, we directly use Eq. 4"); "word": Eqs. 5-6,
    #: the max over the words of z_2 of the word-embedding influence (text; needs layers = classifier)
    influence: str = "example"
    word_rank: int | None = None  # "word": basis of the V_W rows (None = exact; word_influence docstring)

    def __post_init__(self) -> None:
        _check_search_options(self)
        if self.influence not in INFLUENCES:
            raise ConfigError(f"influence graph: influence must be one of {list(INFLUENCES)}, got {self.influence!r}")
        if self.influence == "word" and self.layers is not None and list(
                [self.layers] if isinstance(self.layers, str) else self.layers) != ["classifier"]:
            raise ConfigError(f"influence graph: influence='word' (Eqs. 5-6) is implemented for layers=['classifier'] "
                              f"(the final linear layer), got {self.layers!r}")
        if self.preconditioner not in PRECONDITIONERS:
            raise ConfigError(f"influence graph: preconditioner must be one of {list(PRECONDITIONERS)}, "
                              f"got {self.preconditioner!r}")


@dataclass
class GasGraphConfig:
    """GAS edge weights (ours): ``layerwise`` = GAS-L's per-tensor cosines; the rest as
    :class:`GraphConfig`."""

    layers: Sequence[str] | None = None  # None = all parameters (paper 000's GAS)
    layerwise: bool = False
    weighting: str = "lr_over_b"  # paper 000 Eq. 12
    checkpoint_stride: int = 1
    negative: str = "keep"
    average: str | None = None
    stop: str = "reach"
    prune: str = "remove"

    def __post_init__(self) -> None:
        _check_search_options(self)


class _InfluenceGraph(Defense):
    search: ClassVar[str] = "greedy"

    def edge_weights(self, evidence: Evidence) -> np.ndarray:
        """The asymmetric ``(N, N)`` pairwise matrix (row = influencing example)."""
        raise NotImplementedError

    def score(self, evidence: Evidence) -> np.ndarray:
        k = int(evidence.budget())
        n = len(evidence.train_labels)
        if not 2 <= k <= n:
            raise ValueError(f"influence graph: the subgraph size eps N = {k} must lie in [2, {n}]")
        return self.run_search(self.graph_weights(evidence), k).scores.astype(np.float64)

    def symmetrized(self, I: np.ndarray) -> np.ndarray:
        """Eq. 7's edge weights of a pairwise matrix ``I``, with this config's ``negative``."""
        return symmetrize(np.asarray(I, dtype=np.float64), negative=self.config.negative)

    def graph_weights(self, evidence: Evidence) -> np.ndarray:
        """The graph the search runs on: Eq. 7 applied to :meth:`edge_weights`."""
        return self.symmetrized(self.edge_weights(evidence))

    def run_search(self, w: np.ndarray, k: int) -> SearchResult:
        c = self.config
        avg = {} if c.average is None else {"average": c.average}
        if self.search == "greedy":
            return greedy_search(w, k, **avg)
        return agglomerative_search(w, k, stop=c.stop, prune=c.prune, **avg)


class _IFGraph(_InfluenceGraph):
    Config = GraphConfig
    requires = frozenset({"model", "poison_budget"})

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.config.layers is None:
            raise ConfigError("influence graph: set layers ('all' or parameter/module names, e.g. ['classifier']): "
                              "the Hessian's scope has no default (as for the 'if' defense)")

    def edge_weights(self, evidence: Evidence) -> np.ndarray:
        """Eq. 4's matrix; computed once per trial for every Eq. 4 graph of the same scope,
        solver and damping (Greedy and Agglomerate read one matrix from the trial's memo, which
        keeps the keyed objects alive so their ids are not reused).  Every solver here is
        deterministic (full-data HVPs), so the memo changes no number."""
        c = self.config
        x, y = evidence.train_inputs, evidence.train_labels
        layers = c.layers if isinstance(c.layers, str) else tuple(c.layers)

        def compute() -> np.ndarray:
            if c.influence == "word":
                return word_influence(evidence.model_factory, evidence.final_params, x, y,
                                      preconditioner=c.preconditioner, damping=c.damping, rank=c.word_rank).matrix
            return pairwise_influence(evidence.model_factory, evidence.final_params, x, y, layers=c.layers,
                                      preconditioner=c.preconditioner, damping=c.damping)

        memo = evidence.extras.get("influence_memo")
        if memo is None:
            return compute()
        key = ("pairwise-influence", id(evidence.model_factory), id(evidence.final_params), id(x), id(y), layers,
               c.preconditioner, c.damping, c.influence, c.word_rank)
        if key not in memo:
            matrix = compute()
            matrix.setflags(write=False)
            memo[key] = (matrix, (evidence.model_factory, evidence.final_params, x, y))
        return memo[key][0]


class _GasGraph(_InfluenceGraph):
    Config = GasGraphConfig
    requires = frozenset({"model", "checkpoints", "poison_budget"})

    def edge_weights(self, evidence: Evidence) -> np.ndarray:
        c = self.config
        return pairwise_gas(evidence.model_factory, evidence.run(), evidence.train_inputs, evidence.train_labels,
                            layers=c.layers, layerwise=c.layerwise, weighting=c.weighting,
                            checkpoint_stride=c.checkpoint_stride)


@defenses.register("influence-graph-greedy", "Influence graph (Eq. 4 pairwise IF), greedy max-average subgraph "
                                             "(paper 001 Alg. 1)")
class InfluenceGraphGreedy(_IFGraph):
    search = "greedy"


@defenses.register("influence-graph-agglomerative", "Influence graph (Eq. 4 pairwise IF), agglomerative search "
                                                    "(paper 001 Alg. 2)")
class InfluenceGraphAgglomerative(_IFGraph):
    search = "agglomerative"


@defenses.register("influence-graph-gas-greedy", "Ours: influence graph on pairwise GAS, greedy search")
class InfluenceGraphGasGreedy(_GasGraph):
    search = "greedy"


@defenses.register("influence-graph-gas-agglomerative", "Ours: influence graph on pairwise GAS, agglomerative search")
class InfluenceGraphGasAgglomerative(_GasGraph):
    search = "agglomerative"
