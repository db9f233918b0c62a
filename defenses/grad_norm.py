"""``grad-norm``: a trivial scorer, the norm of each training example's loss gradient at the final
parameters, ``||grad_theta L(z_i; theta_T)||`` (paper 000 Sec. 4.2's gradient-norm statistic,
here as a defense on its own), computed with the influence engine's per-example gradients.

A trivial baseline (see ``defenses/input_norm.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from benchmark.api import Defense, Evidence
from benchmark.registry import defenses
from defenses.influence.engine import EngineOptions, GradientMap, sq_norms


@dataclass
class GradNormConfig:
    layers: str | Sequence[str] = "all"  # "all" or parameter / module names
    negate: bool = False  # True: smallest gradient first
    batch_size: int = 128  # ours (speed only)


@defenses.register("grad-norm", "Trivial baseline: norm of each example's final-model loss gradient "
                                "(higher = more suspicious)")
class GradNorm(Defense):
    Config = GradNormConfig
    requires = frozenset({"model"})

    def score(self, evidence: Evidence) -> np.ndarray:
        c = self.config
        opts = EngineOptions(batch_size=c.batch_size)
        bound = GradientMap("loss").bind(evidence.model(), None if c.layers == "all" else list(c.layers))
        x, y = evidence.train_inputs, evidence.train_labels
        out = []
        for i in range(0, len(y), c.batch_size):
            feats = bound(x[i : i + c.batch_size], y[i : i + c.batch_size])
            out.append(torch.stack([sq_norms(feats[n], opts).double() for n in bound.names]).sum(0))
        s = torch.cat(out).clamp_min(0).sqrt().numpy()
        return -s if c.negate else s
