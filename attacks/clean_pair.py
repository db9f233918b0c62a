"""No attack: a clean class subset of a dataset (paper 000 Sec. 4.5, Fig. 4's non-adversarial
setting: "CIFAR10 binary classification ... from the other two classes").

The training set is ``n_train`` examples drawn uniformly from the task classes' training split,
the test set ``n_test`` of their test examples; D_adv and the target set are empty, so the
harness records no attack success (the report applies no attack-strength gate to it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from attacks.patterns import PoisonCounts, make_task, subsample, task_size
from benchmark.api import Attack, AttackedData, RunContext
from benchmark.data.types import RawDataset, Split, select
from benchmark.registry import attacks


@dataclass
class CleanPairConfig:
    """``classes``: original class ids of the task (paper 000 Sec. 4.5: a CIFAR-10 pair);
    ``n_train`` / ``n_test``: uniformly drawn subsets (``None`` = all)."""

    classes: tuple[int, ...] = (0, 2)
    n_train: int | None = None
    n_test: int | None = None

    def __post_init__(self) -> None:
        self.classes = tuple(int(c) for c in self.classes)
        if len(self.classes) < 2:
            raise ValueError(f"clean-pair needs at least two classes, got {self.classes}")
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be >= 1 or None (all), got {v}")


@attacks.register("clean-pair", "No attack: a clean class subset (paper 000 Sec. 4.5, Fig. 4's non-adversarial data)")
class CleanPair(Attack):
    Config = CleanPairConfig
    modalities = ("image", "audio")
    epsilon_definition: ClassVar[str] = "no poisons: |D_adv| = 0"

    def poison_counts(self, class_sizes: Sequence[int]) -> PoisonCounts:
        n_all = task_size(class_sizes, self.config.classes)
        return PoisonCounts(self.config.n_train if self.config.n_train is not None else n_all, 0, 0)

    def craft(self, data: RawDataset, rng: np.random.Generator, context: RunContext) -> AttackedData:
        self.check_dataset(data)
        c = self.config
        task = make_task(data, c.classes)
        train, train_keep = subsample(task.train, c.n_train, rng, "clean training examples")
        test, test_keep = subsample(task.test, c.n_test, rng, "clean test examples")
        empty = Split(select(test.inputs, torch.arange(0)), test.labels[:0].clone())
        info: dict[str, Any] = {
            "classes": list(c.classes), "n_train": len(train), "n_adv": 0, "n_test": len(test), "n_targets": 0,
            "train_raw_index": task.train_index[train_keep], "test_raw_index": task.test_index[test_keep],
        }
        return AttackedData(
            train=train, is_adv=torch.zeros(len(train), dtype=torch.bool), test=test, targets=empty,
            y_adv=torch.zeros(0, dtype=torch.long), non_targets=test, num_classes=len(task.class_ids),
            classes=task.classes, targets_clean=None, modality=data.modality, sample_rate=data.sample_rate,
            info=info)
