"""Protocol: paper 000's training diagnostics as records (Fig. 2, Fig. 3; Secs. 4.2, 4.4).

Fig. 2: the median and IQR of the per-example losses of D_adv and of (a random sample of) D_cl at
every checkpoint and at theta_T, and the gradient norm ratio GNR_t (Eq. 6).  Fig. 3: a successful
target's gradient norm split into the first conv layer, the final linear layer and the rest.
Both are computed by :mod:`benchmark.diagnostics` (which ``python -m benchmark diagnose`` also
uses) and stored in the record's ``extra``, so the figures are drawn from committed records.
The one "method" is the ``none`` defense (nothing is scored); the records carry no metric.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark import diagnostics as dg
from benchmark.api import MethodResult, Protocol
from benchmark.config import ConfigError
from benchmark.protocols.common import require_no_scoring
from benchmark.registry import protocols
from benchmark.trial import PreparedTrial


@dataclass(frozen=True)
class Params:
    max_clean: int = 1000  # ours (as `benchmark diagnose`): random sample of D_cl for Fig. 2
    loss_tracking: bool = True  # Fig. 2
    layer_split: bool = True  # Fig. 3

    def __post_init__(self) -> None:
        if self.max_clean < 1:
            raise ConfigError(f"training-diagnostics: max_clean must be >= 1, got {self.max_clean}")
        if not (self.loss_tracking or self.layer_split):
            raise ConfigError("training-diagnostics: enable loss_tracking (Fig. 2) or layer_split (Fig. 3)")


@dataclass
class State:
    sample: np.ndarray  # training indices: all of D_adv, then the D_cl sample
    target: int | None  # index of a successful target (None: no target was flipped)


@protocols.register("training-diagnostics",
                    "Paper 000 Figs. 2-3: D_adv / D_cl losses and GNR per checkpoint, a target's layerwise gradient")
class TrainingDiagnostics(Protocol):
    Params = Params

    def check_method(self, method) -> None:
        require_no_scoring(method, "the training-diagnostics protocol scores nothing")

    def setup(self, p: PreparedTrial, rng: np.random.Generator) -> State:
        adv, clean = np.flatnonzero(p.is_adv), np.flatnonzero(~p.is_adv)
        if len(clean) > self.params.max_clean:
            clean = np.sort(rng.choice(clean, size=self.params.max_clean, replace=False))
        target = int(rng.choice(p.successful_targets)) if len(p.successful_targets) else None
        return State(np.r_[adv, clean], target)

    def evaluate(self, p: PreparedTrial, state: State, method, rng: np.random.Generator) -> MethodResult:
        prm, extra = self.params, {}
        idx = torch.as_tensor(state.sample)
        adv = p.is_adv[state.sample]
        if prm.loss_tracking and adv.any() and not adv.all():
            lt = dg.loss_tracking(p.model_factory, p.run, p.train.inputs[idx], p.train.labels[idx], adv)
            extra["loss_tracking"] = lt.to_dict()
        if prm.layer_split and state.target is not None:
            j = state.target
            ls = dg.layer_gradient_split(p.model_factory, p.run, p.targets.inputs[j], p.attacked.y_adv[j])
            extra["layer_split"] = {**ls.to_dict(), "target_index": j}
        return MethodResult(metrics={}, scores=None, granted=[], extra=extra)
