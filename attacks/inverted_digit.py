"""Paper 000 Sec. 4.1's CIFAR-10 + MNIST-0 experiment in miniature, on the embedded digits.

Two digit classes are the clean binary task (the stand-ins for frog and airplane); the
adversarial set is a few intensity-inverted images (x -> 1 - x, a clearly different
distribution, like MNIST next to CIFAR-10) of a third digit, labelled as one of the clean
classes; the targets are held-out inverted instances of that third digit, disjoint from the
adversarial set.  Labels are remapped to {0, 1}: ``clean_classes[0]`` -> 0, ``clean_classes[1]`` -> 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from attacks.patterns import PoisonCounts
from benchmark.api import Attack, AttackedData, RunContext
from benchmark.data.types import RawDataset, Split, concat
from benchmark.registry import attacks


TRANSFORMS = ("invert", "invert-matched-norm", "none")


@dataclass(frozen=True)
class InvertedDigitConfig:
    clean_classes: tuple[int, int] = (6, 9)  # paper 000 Sec. 4.1's pair criterion (benchmark.tools.select_toy_pair)
    adv_digit: int = 3  # ours; inverted 3s play the role of MNIST 0s
    adv_label: int = 1  # binary label of clean_classes[1] (paper: MNIST 0s labelled airplane)
    adv_fraction: float = 0.015  # |D_adv| / |D_cl| (paper 000 Sec. 4.1: 150 / 10,000)
    n_targets: int = 20  # held-out inverted adv_digit instances (ours)
    #: how the adversarial digit is changed (ours): "invert" (x -> 1 - x), "invert-matched-norm"
    #: (inverted, then each image rescaled to the L2 norm of a random clean training image, so the
    #: input norm does not give the poisons away), "none" (the digit as it is)
    transform: str = "invert"

    def __post_init__(self) -> None:
        if len(set(self.clean_classes)) != 2 or self.adv_digit in self.clean_classes:
            raise ValueError("clean_classes must be two distinct digits, different from adv_digit")
        if self.adv_label not in (0, 1):
            raise ValueError("adv_label is a binary label: 0 or 1")
        if not 0 < self.adv_fraction < 1:
            raise ValueError("adv_fraction must be in (0, 1)")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")


@attacks.register("inverted-digit",
                  "Toy of paper 000 Sec. 4.1: a few inverted images of a third digit labelled as a clean class")
class InvertedDigit(Attack):
    Config = InvertedDigitConfig
    modalities = ("image",)
    epsilon_definition = (
        "fraction of the clean set, added to it (paper 000 Sec. 4.1: |D_adv| = 150 for "
        "|D_cl| = 10,000): n_adv = round(adv_fraction * |D_cl|), |D_tr| = |D_cl| + n_adv")

    def poison_counts(self, class_sizes: Sequence[int]) -> PoisonCounts:
        """What :meth:`craft` would produce on a training split with ``class_sizes[k]`` images of
        digit ``k``."""
        n_clean = sum(class_sizes[k] for k in self.config.clean_classes)
        return PoisonCounts(n_clean + self.n_adv(n_clean), self.n_adv(n_clean))

    def n_adv(self, n_clean: int) -> int:
        return max(1, int(round(self.config.adv_fraction * n_clean)))

    def craft(self, data: RawDataset, rng: np.random.Generator, context: RunContext) -> AttackedData:
        self.check_dataset(data)
        c = self.config
        a, b = c.clean_classes

        def binary(split: Split) -> Split:
            keep = (split.labels == a) | (split.labels == b)
            return Split(split.inputs[keep].clone(), (split.labels[keep] == b).long())

        clean_train, clean_test = binary(data.train), binary(data.test)
        n_adv = self.n_adv(len(clean_train))
        pool = torch.cat([
            data.train.inputs[data.train.labels == c.adv_digit],
            data.test.inputs[data.test.labels == c.adv_digit],
        ])
        if len(pool) < n_adv + c.n_targets:
            raise ValueError(f"only {len(pool)} images of digit {c.adv_digit}; need {n_adv + c.n_targets}")
        order = torch.from_numpy(rng.permutation(len(pool)))
        adv_x = self._transform(pool[order[:n_adv]], clean_train.inputs, rng)
        target_x = self._transform(pool[order[n_adv : n_adv + c.n_targets]], clean_train.inputs, rng)
        true_target_label = 1 - c.adv_label  # the "other" class: a flip means the attack worked

        train = Split(concat(clean_train.inputs, adv_x),
                      torch.cat([clean_train.labels, torch.full((n_adv,), c.adv_label)]))
        is_adv = torch.cat([torch.zeros(len(clean_train), dtype=torch.bool),
                            torch.ones(n_adv, dtype=torch.bool)])
        # Shuffle so adversarial examples are not all at the end (ids carry no information).
        perm = torch.from_numpy(rng.permutation(len(train)))
        train, is_adv = train.subset(perm), is_adv[perm]
        return AttackedData(
            train=train,
            is_adv=is_adv,
            test=clean_test,
            targets=Split(target_x, torch.full((c.n_targets,), true_target_label)),
            y_adv=torch.full((c.n_targets,), c.adv_label),
            non_targets=clean_test,
            num_classes=2,
            classes=[str(a), str(b)],
            info={"n_adv": n_adv, "n_clean": len(clean_train), "adv_digit": c.adv_digit},
        )

    def _transform(self, x: torch.Tensor, clean: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The configured change of the adversarial digit's images (``transform``)."""
        t = self.config.transform
        if t == "none":
            return x.clone()
        inv = 1.0 - x
        if t == "invert":
            return inv
        norms = clean.flatten(1).norm(dim=1)
        want = norms[torch.from_numpy(rng.integers(0, len(norms), len(inv)))]
        have = inv.flatten(1).norm(dim=1).clamp_min(1e-12)
        return inv * (want / have).view(-1, *([1] * (inv.dim() - 1)))
