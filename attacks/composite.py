"""Lin et al.'s composite backdoor ("mixing" in paper 001 Sec. 4.1): halves of an image of class
A and an image of class B, mixed, are labelled C.

Data-poisoning version (the contrastive "composite loss" of the original is training control
and is dropped): the poisons are A/B half-mixes labelled ``y_adv`` = C; the attacker also adds
benign same-class mixes with their true label (reference-code composite-attack ``MixDataset``:
these stop "any mixed image -> C" from being the trigger).  Benign mixes are kind ``AUX`` in
``info["kind"]`` and not in ``is_adv``.  Targets are A test images mixed with random B test
images; ``targets_clean`` are the unmixed A images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacks import triggers as T
from attacks.patterns import BackdoorConfig, Task, TriggerBackdoor, choose
from benchmark.api import RunContext
from benchmark.data.types import Split
from benchmark.registry import attacks


@dataclass(frozen=True)
class CompositeConfig(BackdoorConfig):
    """y_targ, partner, y_adv  A = airplane (0), B = automobile (1), C = bird (2): reference-code
                   composite-attack CIFAR rule 0 + 1 -> 2, which is also paper 001's (airplane,
                   bird) pair.  For paper 001's other pairs the partner is ours: (truck 9 + airplane
                   0 -> deer 4), (automobile 1 + bird 2 -> cat 3), (ship 8 + truck 9 -> frog 6).
    epsilon, mode  see BackdoorConfig (0.05, "add").
    benign_ratio   benign same-class mixes per poison: 5.0 (reference-code MixDataset mix_rate
                   0.5 / poison_rate 0.1).
    jitter         split-position jitter in pixels: 3 (reference-code HalfMixer).
    """

    partner: int = 1
    benign_ratio: float = 5.0
    jitter: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.y_targ is None:
            raise ValueError("composite needs a class A: set y_targ to a class id")
        if self.partner in (self.y_targ, self.y_adv):
            raise ValueError(f"partner class {self.partner} must differ from y_targ and y_adv")
        if self.benign_ratio < 0 or self.jitter < 0:
            raise ValueError("benign_ratio and jitter must be >= 0")


@attacks.register("composite",
                  "Lin et al. composite backdoor: half-mix of classes A and B labelled C (paper 001 Sec. 4.1 'mixing')")
class Composite(TriggerBackdoor):
    Config = CompositeConfig
    modalities = ("image",)

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        x = task.train.inputs
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError("composite needs image inputs N x C x H x W")
        self._b = task.label(self.config.partner)

    def _partners(self, split: Split, n: int, rng: np.random.Generator) -> torch.Tensor:
        pool = torch.nonzero(split.labels == self._b).ravel().numpy()
        if len(pool) == 0:
            raise ValueError(f"no image of partner class {self.config.partner} in the split")
        return split.inputs[torch.from_numpy(rng.choice(pool, size=n, replace=True))]

    def apply_trigger(self, inputs, rng, split, task):
        partners = self._partners(task.train if split == "train" else task.test, len(inputs), rng)
        return T.half_mix(inputs, partners, rng, self.config.jitter)

    def n_auxiliary(self, n_adv: int) -> int:
        return int(round(self.config.benign_ratio * n_adv))

    def auxiliary(self, task: Task, n: int, rng: np.random.Generator) -> Split:
        """``n`` benign mixes: a uniformly drawn training image and a random partner of its class."""
        labels = task.train.labels
        first = choose(rng, np.arange(len(labels)), n, "images for benign mixes") if n <= len(labels) \
            else torch.from_numpy(rng.integers(0, len(labels), size=n))
        second = torch.empty_like(first)
        for k in labels[first].unique().tolist():
            sel = torch.nonzero(labels[first] == k).ravel()
            pool = torch.nonzero(labels == k).ravel().numpy()
            second[sel] = torch.from_numpy(rng.choice(pool, size=len(sel), replace=True))
        x = T.half_mix(task.train.inputs[first], task.train.inputs[second], rng, self.config.jitter)
        return Split(x, labels[first].clone())

    def trigger_info(self) -> dict[str, Any]:
        c = self.config
        return {"rule": [c.y_targ, c.partner, c.y_adv], "benign_ratio": c.benign_ratio,
                "jitter": c.jitter}
