"""``loss``: a trivial scorer, each training example's loss under the final model.

A trivial baseline (see ``defenses/input_norm.py``): high final loss first, or with
``negate=True`` low loss first (paper 000 Sec. 4.2: adversarial examples often end with low loss).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.api import Defense, Evidence
from benchmark.registry import defenses
from benchmark.training.losses import per_example_loss


@dataclass
class LossConfig:
    negate: bool = False  # True: lowest loss first
    batch_size: int = 512  # ours (speed only)


@defenses.register("loss", "Trivial baseline: final-model training loss of each example (higher = more suspicious)")
class FinalLoss(Defense):
    Config = LossConfig
    requires = frozenset({"model"})

    @torch.no_grad()
    def score(self, evidence: Evidence) -> np.ndarray:
        model = evidence.model()
        x, y = evidence.train_inputs, evidence.train_labels
        b = self.config.batch_size
        s = torch.cat([per_example_loss(model(x[i : i + b]), y[i : i + b]) for i in range(0, len(y), b)])
        s = s.double().numpy()
        return -s if self.config.negate else s
