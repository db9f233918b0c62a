"""Per-example classification losses.

A model with one output logit is a binary classifier trained with logistic loss
(``BCEWithLogits``, as in the reference code for binary tasks); a model with ``C > 1`` outputs
uses cross-entropy.  ``per_example_loss`` returns one loss per example (no reduction), without
any weight-decay term (paper 000, Sec. 2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.ndim == 2 and logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits[:, 0], labels.to(logits.dtype), reduction="none"
        )
    return F.cross_entropy(logits, labels, reduction="none")


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Predicted labels: sign of the single logit, or argmax."""
    if logits.ndim == 2 and logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def num_outputs(num_classes: int) -> int:
    """Binary tasks use one logit (reference code); multiclass tasks one logit per class."""
    return 1 if num_classes == 2 else num_classes
