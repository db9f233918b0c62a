"""The attack contract: ``craft`` turns a clean raw dataset into an attacked one.

Attacks act on *raw* inputs (pixels in [0, 1], waveforms, strings); featurizers run afterwards.
Every attack is seeded only through the ``rng`` it is handed (explicit random state).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from benchmark.config import build
from benchmark.data.types import RawDataset, Split


@dataclass
class AttackedData:
    """What an attack hands the harness.

    ``train``           poisoned training set (raw), labels as the victim sees them.
    ``is_adv``          bool mask over ``train``: True for the adversarial set D_adv.
    ``test``            clean test set, for clean accuracy.
    ``targets``         target inputs as the attacker presents them at test time (triggered for
                        backdoors, unperturbed for poisoning), with their TRUE labels y_targ.
    ``targets_clean``   the same targets without trigger (None when the attack has no trigger);
                        used to keep only targets that are correctly classified when clean.
    ``y_adv``           adversarial label of each target (int64, one per target).
    ``non_targets``     clean test inputs that are not targets, for analysis sets.
    ``num_classes``     number of labels the victim predicts.
    ``info``            attack-specific facts worth recording (trigger norms, chosen ids, ...).
    """

    train: Split
    is_adv: torch.Tensor
    test: Split
    targets: Split
    y_adv: torch.Tensor
    non_targets: Split
    num_classes: int
    classes: list[str]
    targets_clean: Split | None = None
    modality: str = "image"
    sample_rate: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.is_adv = torch.as_tensor(self.is_adv, dtype=torch.bool)
        self.y_adv = torch.as_tensor(self.y_adv, dtype=torch.long)
        if len(self.is_adv) != len(self.train):
            raise ValueError("is_adv must have one entry per training example")
        if len(self.y_adv) != len(self.targets):
            raise ValueError("y_adv must have one entry per target")
        if self.targets_clean is not None and len(self.targets_clean) != len(self.targets):
            raise ValueError("targets_clean must align with targets")

    @property
    def n_adv(self) -> int:
        return int(self.is_adv.sum())


@dataclass(frozen=True)
class RunContext:
    """What the harness hands an attack besides the data and the rng.

    ``cache_dir``  where attack artefacts that are expensive to build (trigger networks, crafted
                   poisons, pre-trained substitutes) are cached; ``None`` = build, never cache.
    ``device``     torch device for any training the attack does (``"cpu"``, ``"cuda"``, ...).
    ``extra``      the further datasets named in :attr:`Attack.extra_datasets`, loaded by the
                   harness and keyed by registered name.
    """

    cache_dir: Path | None = None
    device: str = "cpu"
    extra: Mapping[str, RawDataset] = field(default_factory=dict)


class Attack(ABC):
    """Base class of every training-set attack.  Subclasses set ``Config`` (a dataclass whose
    fields are the attack's parameters) and ``modalities``."""

    Config: ClassVar[type]
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    #: Names of further registered datasets the attack needs (e.g. ``("mnist",)`` for the joint
    #: CIFAR-10 + MNIST-0 attack).  The harness loads each with its default parameters and passes
    #: them in ``context.extra``.
    extra_datasets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.config = build(self.Config, params, what=f"attack {type(self).__name__}")

    def check_dataset(self, data: RawDataset) -> None:
        if data.modality not in self.modalities:
            raise ValueError(
                f"attack {type(self).__name__} works on {self.modalities} data, "
                f"but dataset {data.name!r} is {data.modality!r}"
            )

    @abstractmethod
    def craft(self, data: RawDataset, rng: np.random.Generator, context: RunContext) -> AttackedData:
        """Return the attacked dataset.  All randomness comes from ``rng``; caches and devices
        come from ``context`` (never from environment variables or globals)."""

    def require_extra(self, context: RunContext, name: str) -> RawDataset:
        """Return ``context.extra[name]`` or fail with a message that says how to provide it."""
        if name not in context.extra:
            raise ValueError(
                f"attack {type(self).__name__} needs dataset {name!r} in the run context: "
                f"craft(..., RunContext(extra={{{name!r}: benchmark.registry.datasets.get({name!r})"
                f"(data_root=..., cache_dir=...)}})); the harness does this for names listed in "
                f"extra_datasets"
            )
        return context.extra[name]
