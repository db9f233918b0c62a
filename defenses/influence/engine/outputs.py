"""Per-example scalar functions ``(logits, labels) -> (B,)`` whose gradients the maps take."""
from __future__ import annotations

from typing import Callable

import torch

from benchmark.training.losses import per_example_loss

OutputFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _is_single_logit(logits: torch.Tensor) -> bool:
    return logits.ndim == 2 and logits.shape[1] == 1


def gold_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The logit of the given label; for a single-logit binary model, ``+a`` for label 1 and
    ``-a`` for label 0 (the logit of class 0 relative to class 1)."""
    if _is_single_logit(logits):
        return logits[:, 0] * (2 * labels.to(logits.dtype) - 1)
    return logits.gather(1, labels.long()[:, None])[:, 0]


def gold_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Predicted probability of the given label: paper 001's score ``F_y`` (Sec. 3.2.1,
    "the probability change of labeling x_j as y_j")."""
    if _is_single_logit(logits):
        return torch.sigmoid(gold_logit(logits, labels))
    return torch.softmax(logits, dim=1).gather(1, labels.long()[:, None])[:, 0]


#: Named per-example scalars: ``loss`` (paper 000 Sec. 2, no weight decay), ``gold_prob`` /
#: ``gold_score`` (paper 001 Eq. 4's ``F_y``), ``gold_logit``.
OUTPUT_FUNCTIONS: dict[str, OutputFn] = {
    "loss": per_example_loss,
    "gold_prob": gold_prob,
    "gold_score": gold_prob,
    "gold_logit": gold_logit,
}


def output_function(fn: str | Callable) -> OutputFn:
    """A callable as is, or the named function of :data:`OUTPUT_FUNCTIONS`."""
    if callable(fn):
        return fn
    if fn not in OUTPUT_FUNCTIONS:
        raise ValueError(f"unknown output function {fn!r}; choose one of {sorted(OUTPUT_FUNCTIONS)} "
                         f"or pass a callable (logits, labels) -> per-example scalars")
    return OUTPUT_FUNCTIONS[fn]
