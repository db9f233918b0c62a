"""Representations for representation-space methods: the penultimate features ``model.features(x)``
of every benchmark model, and the per-class bookkeeping the class-wise defenses share (spectral
signatures, activation clustering and SPECTRE all score each *assigned* label class on its own).

Harness layer, so that ``defenses/`` and ``baselines/`` can both use it without importing each
other (import-linter contracts in pyproject.toml).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


@torch.no_grad()
def penultimate_features(model: nn.Module, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``(N, D)`` float64 penultimate representations ``model.features(x)``, flattened."""
    if not hasattr(model, "features"):
        raise TypeError(f"{type(model).__name__} has no .features(x); representation-space methods need "
                        "the penultimate representation (every benchmark model exposes it)")
    model.eval()
    out = [model.features(inputs[i : i + batch_size]).reshape(len(inputs[i : i + batch_size]), -1)
           for i in range(0, len(inputs), batch_size)]
    return torch.cat(out).double()


def class_indices(labels: np.ndarray) -> dict[int, np.ndarray]:
    """``{label: indices of the examples with that (assigned) label}``, labels in increasing order."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


def check_features(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(features, labels)`` as a finite float64 ``(N, D)`` matrix and an int ``(N,)`` vector."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"features must be an (N, D) matrix, got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},), got {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain non-finite values")
    return x, y.astype(np.int64)


def within_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class quantile of each score, for one ranking over classes: ``1 - (r - 1) / n_c`` where
    ``r`` is the example's 1-based descending rank within its class of ``n_c`` examples (the top
    of every class gets 1).  Taking the global top ``q N`` of these removes about the same fraction
    ``q`` of every class -- the per-class removal of Tran et al. (2018) Alg. 1.  Ties of equal
    quantile across classes are broken, without reordering any class, by ``0.5 / n_max`` times the
    score relative to its class median, squashed to ``[0, 1)`` (ours)."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.zeros(len(s))
    groups = class_indices(labels)
    n_max = max((len(i) for i in groups.values()), default=1)
    for idx in groups.values():
        sc = s[idx]
        order = np.argsort(-sc, kind="stable")
        rank = np.empty(len(idx))
        rank[order] = np.arange(len(idx))
        med = float(np.median(np.abs(sc)))
        rel = np.abs(sc) / med if med > 0 else np.zeros(len(idx))
        out[idx] = 1.0 - rank / len(idx) + 0.5 / n_max * rel / (1.0 + rel)
    return out


def median_normalised(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each score divided by the median absolute score of its class (a scale-free ratio; a class
    whose median is 0 keeps its scores).  Ours."""
    s = np.asarray(scores, dtype=np.float64).copy()
    for idx in class_indices(labels).values():
        med = float(np.median(np.abs(s[idx])))
        if med > 0:
            s[idx] /= med
    return s
