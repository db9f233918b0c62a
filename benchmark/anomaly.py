"""Robust anomaly scores of an influence vector (paper 000 Sec. 5.2): sigma = (v - median) / Q_n.

Used by FIT (target identification, Alg. 2) and by target-driven mitigation (Alg. 3).  Degenerate
scale: when Q_n = 0 (more than half of the group's pairwise distances are zero, or a single
example), ``sigma`` is +inf above the median, -inf below it and 0 at it (ours; the reference code
would divide by zero); rankers that need finite scores order those with a finite secondary key
(see ``baselines.fit``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark.robust_scale import qn_scale


def robust_center_scale(values: Any, finite_corr: str = "none") -> tuple[float, float]:
    """``(median, Q_n)`` of a 1-D sample (paper 000 Sec. 5.2, Eq. 13)."""
    arr = as_float_vector(values, "values")
    if arr.size == 0:
        raise ValueError("cannot take the median / Q_n of an empty group of training examples")
    return float(np.median(arr)), qn_scale(arr, finite_corr=finite_corr)


def standardize(values: np.ndarray, center: Any, scale: Any) -> np.ndarray:
    """``(values - center) / scale`` with the Q_n = 0 convention of the module docstring."""
    values = np.asarray(values, dtype=np.float64)
    diff = values - center
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), diff.shape)
    out = np.where(diff > 0, np.inf, np.where(diff < 0, -np.inf, 0.0))
    pos = scale > 0
    out[pos] = diff[pos] / scale[pos]
    return out


def stats_mask(train_labels: Any, predicted_label: int, per_class: bool = True) -> np.ndarray:
    """Boolean mask of the training examples whose influence defines median and Q_n."""
    labels = as_int_vector(train_labels, "train_labels")
    if not per_class:
        return np.ones(len(labels), dtype=bool)
    mask = labels == int(predicted_label)
    if not mask.any():
        raise ValueError(f"no training example is labelled {int(predicted_label)} (a candidate's "
                         "predicted label), so per-class statistics are undefined; use "
                         "per_class_stats=False")
    return mask


def anomaly_scores(v: Any, train_labels: Any, predicted_label: int, per_class: bool = True,
                   finite_corr: str = "none") -> np.ndarray:
    """``sigma = (v - median) / Q_n`` for one influence vector ``v`` (paper 000 Sec. 5.2).

    Median and Q_n come from the training examples labelled ``predicted_label`` when
    ``per_class`` (else from all); ``sigma`` is returned for every training example.  The
    median is the usual one (mean of the two middle values for an even count); the reference
    code's ``torch.median`` takes the lower middle value instead.
    """
    v = as_float_vector(v, "v")
    mask = stats_mask(train_labels, predicted_label, per_class)
    if len(mask) != len(v):
        raise ValueError(f"v has {len(v)} entries but there are {len(mask)} training labels")
    center, scale = robust_center_scale(v[mask], finite_corr)
    return standardize(v, center, scale)


def as_float_vector(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def as_int_vector(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64)
