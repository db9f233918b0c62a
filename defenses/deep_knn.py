"""``deep-knn``: Peri et al. (2020), "Deep k-NN defense against clean-label data poisoning attacks" --
compared by paper 000 (Sec. 6.2, Fig. 6) on its vision poisoning attack ("where applicable").

Every training example's ``k`` nearest training examples in penultimate-feature space (L2; the
example itself included among its neighbours, as the reference code's brute-force k-NN predicts
the very points it was fitted on), and

    frac_i = |{j in N_k(i) : y_j != y_i}| / k,
    flagged_i = (plurality label of N_k(i)) != y_i     (ties: the smallest label, as scikit-learn)

-- Peri et al. remove the flagged examples.  ``rank="plurality"`` (default) scores
``1[flagged_i] + frac_i`` so the top of the ranking is exactly the removed set; ``rank="fraction"``
scores ``frac_i`` alone (not monotone in the flag: a label split among several other classes can
disagree more without a plurality).

``k``: paper 000 does not state it.  Peri et al.'s guideline is a ``k`` about one to two times the
number of examples per class, and the reference code's default is ``K = 101`` on its fine-tuning
set of 50 examples per class (notes: neeharperi/DeepKNNDefense), i.e. the upper end.  ``k = None``
(default) takes the lower end, ``round(N / C)`` for ``N`` training examples in ``C`` classes: at
twice the class size an example's own class can hold at most half of its ``2 n_c + 1``
neighbours, so in a balanced two-class task (paper 000's vision backdoor) every example would be
flagged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import Defense, Evidence
from benchmark.config import ConfigError
from benchmark.features import check_features, penultimate_features
from benchmark.registry import defenses

RANKS = ("plurality", "fraction")


@dataclass
class DeepKNNConfig:
    k: int | None = None  # paper (Peri et al. guideline, lower end): None = round(N / C) (docstring)
    rank: str = "plurality"  # paper: Peri et al. remove the plurality-disagreeing examples first
    batch_size: int = 512  # ours (forward passes; no effect on the scores)

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ConfigError(f"k must be >= 1 (or None for the default), got {self.k}")
        if self.rank not in RANKS:
            raise ConfigError(f"rank must be one of {RANKS}, got {self.rank!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


def default_k(labels: np.ndarray) -> int:
    """``round(N / C)`` (``C`` = classes present), at least 1 (module docstring)."""
    n = len(labels)
    c = max(1, len(np.unique(labels)))
    return max(1, min(n, int(round(n / c))))


def neighbour_label_counts(features: np.ndarray, labels: np.ndarray, k: int,
                           chunk_elems: int = 4_000_000) -> np.ndarray:
    """``(N, L)`` counts of each label among every example's ``k`` nearest training examples
    (squared L2, float64; the example itself always among them)."""
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}] (the number of training examples)")
    n_labels = int(y.max()) + 1 if n else 0
    sq = (x * x).sum(dim=1)
    step = max(1, chunk_elems // max(n, 1))
    out = torch.zeros(n, n_labels, dtype=torch.float64)
    for i in range(0, n, step):
        xc = x[i : i + step]
        d2 = (sq[i : i + step, None] + sq[None, :] - 2.0 * (xc @ x.T)).clamp_min_(0.0)
        rows = torch.arange(len(xc))
        d2[rows, rows + i] = -1.0  # the example itself is always one of its neighbours
        nn_idx = d2.topk(k, dim=1, largest=False).indices
        out[i : i + step].scatter_add_(1, y[nn_idx], torch.ones(nn_idx.shape, dtype=torch.float64))
    return out.numpy()


def scores_from_features(features: np.ndarray, labels: np.ndarray, k: int | None = None,
                         rank: str = "plurality") -> np.ndarray:
    """``(N,)`` Deep k-NN scores (module docstring)."""
    if rank not in RANKS:
        raise ValueError(f"rank must be one of {RANKS}, got {rank!r}")
    x, y = check_features(features, labels)
    if (y < 0).any():
        raise ValueError("labels must be non-negative")
    k = default_k(y) if k is None else k
    counts = neighbour_label_counts(x, y, k)
    own = counts[np.arange(len(y)), y]
    frac = 1.0 - own / k
    if rank == "fraction":
        return frac
    flagged = counts.argmax(axis=1) != y  # argmax: first (smallest) label on a tie
    return flagged.astype(np.float64) + frac


@defenses.register("deep-knn", "Deep k-NN (Peri et al. 2020): plurality label of the k nearest training "
                               "examples in penultimate-feature space differs from the own label")
class DeepKNN(Defense):
    """Peri et al. (2020) on the final model's penultimate features."""

    Config = DeepKNNConfig
    requires = frozenset({"model"})

    def score(self, evidence: Evidence) -> np.ndarray:
        c = self.config
        f = penultimate_features(evidence.model(), evidence.train_inputs, c.batch_size).numpy()
        return scores_from_features(f, evidence.train_labels.numpy(), c.k, c.rank)
