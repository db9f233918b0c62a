"""What a protocol hands a method: the :class:`Evidence` of one call, holding only what the
method declared in ``requires`` (a subset of :data:`NEEDS`).  Oracle knowledge is flagged as
such in records."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

#: Everything a protocol can hand a method.  Oracle knowledge is flagged as such in records.
NEEDS: dict[str, str] = {
    "model": "the final trained model (eval mode)",
    "checkpoints": "the recorded training trajectory (theta_0, checkpoints, learning rates, batches)",
    "queries": "the test examples to explain, with the final model's predicted labels",
    "clean_validation": "a known-clean held-out set (oracle knowledge)",
    "poison_budget": "the number of adversarial training examples eps*N (oracle knowledge)",
    "raw_train_inputs": "the training inputs as the attack left them, before featurization "
                        "(text: the sentences; images: [0, 1] pixels)",
}
ORACLE_NEEDS = frozenset({"clean_validation", "poison_budget"})


#: Key of the trial memo (and of ``Evidence.extras``) under which the runner lists the methods it
#: runs on a trial, so that methods sharing work (one engine pass for several estimators) know
#: what to compute in that pass.
TRIAL_METHODS = "trial_methods"


class MissingEvidence(AttributeError):
    pass


@dataclass
class Evidence:
    """What a protocol gives a method.  Fields not declared in ``requires`` are withheld."""

    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    num_classes: int
    rng: np.random.Generator
    granted: frozenset[str]
    model_factory: Callable[[], nn.Module] | None = None
    final_params: dict[str, torch.Tensor] | None = None
    training_run: Any = None  # benchmark.training.TrainingRun
    train_config: Any = None  # benchmark.training.TrainConfig: the defender's own hyperparameters
    query_inputs: torch.Tensor | None = None
    query_labels: torch.Tensor | None = None  # predicted labels y_hat of the final model
    clean_validation: tuple[torch.Tensor, torch.Tensor] | None = None
    poison_budget: int | None = None
    raw_train_inputs: Any = None  # list of strings / tensor, aligned with train_inputs
    extras: dict[str, Any] = field(default_factory=dict)

    def require(self, need: str) -> None:
        if need not in self.granted:
            raise MissingEvidence(
                f"this method asked for {need!r} ({NEEDS.get(need, '?')}) but did not declare it "
                f"in `requires`; declared: {sorted(self.granted)}"
            )

    def model(self) -> nn.Module:
        """A fresh copy of the final model, in eval mode."""
        self.require("model")
        assert self.model_factory is not None and self.final_params is not None
        model = self.model_factory()
        model.load_state_dict(self.final_params)
        return model.eval()

    def queries(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.require("queries")
        assert self.query_inputs is not None and self.query_labels is not None
        return self.query_inputs, self.query_labels

    def run(self):
        self.require("checkpoints")
        return self.training_run

    def raw_inputs(self) -> Any:
        """The raw training inputs (one per row of ``train_inputs``), e.g. sentences for text."""
        self.require("raw_train_inputs")
        assert self.raw_train_inputs is not None
        return self.raw_train_inputs

    def budget(self) -> int:
        self.require("poison_budget")
        assert self.poison_budget is not None
        return self.poison_budget
