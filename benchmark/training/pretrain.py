"""Pre-training on held-out classes, then fine-tuning (paper 000 Sec. 4.5, Fig. 4: "ResNet9 was
pre-trained on eight (= 10 - 2) held-out CIFAR10 classes"; the convex-polytope setting of Sec. 6.1
pre-trains on five).

A trial config's optional ``pretrain`` section names the held-out classes of the *raw* dataset,
how many training examples of each are used and the trainer settings that differ from the
trial's own.  The pre-trained network has one output per held-out class; every parameter whose
name and shape match the victim's is copied into the victim's initialisation (the output layer,
whose shape differs, keeps its fresh initialisation), so the trial's theta_0 -- where training
and every retraining start -- is the pre-trained backbone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PretrainConfig:
    """``classes``: original class ids of the raw dataset to pre-train on (they must not be
    task classes); ``n_per_class``: training examples drawn per class (``None`` = all);
    ``train``: trainer settings overriding the trial's ``train`` section."""

    classes: tuple[int, ...]
    n_per_class: int | None = None
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        if len(self.classes) < 2:
            raise ValueError(f"pretrain.classes needs at least two classes, got {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"pretrain.classes {self.classes} contains a duplicate")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ValueError(f"pretrain.n_per_class must be >= 1 or None (all), got {self.n_per_class}")


def held_out_index(labels: torch.Tensor, cfg: PretrainConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into ``labels`` of the pre-training examples (``n_per_class`` drawn uniformly per
    class, in original order) and their labels relabelled 0..len(classes)-1 in ``cfg.classes``
    order."""
    idx, lab = [], []
    for k, c in enumerate(cfg.classes):
        pool = torch.nonzero(labels == c).ravel()
        if len(pool) == 0:
            raise ValueError(f"pretrain: class {c} has no training example in the dataset")
        if cfg.n_per_class is not None:
            if cfg.n_per_class > len(pool):
                raise ValueError(f"pretrain: n_per_class={cfg.n_per_class} but class {c} has only {len(pool)} "
                                 f"training examples; lower n_per_class")
            pool = pool[torch.randperm(len(pool), generator=generator)[: cfg.n_per_class]].sort().values
        idx.append(pool)
        lab.append(torch.full((len(pool),), k, dtype=torch.long))
    order = torch.cat(idx).argsort()
    return torch.cat(idx)[order], torch.cat(lab)[order]


def load_backbone(model: nn.Module, backbone: StateDict) -> list[str]:
    """Copy every entry of ``backbone`` whose name and shape match ``model``'s state into it;
    return the names of ``model``'s entries left at their initialisation (the output layer)."""
    state = model.state_dict()
    kept = []
    for name, value in state.items():
        other = backbone.get(name)
        if other is not None and other.shape == value.shape:
            state[name] = other.clone()
        else:
            kept.append(name)
    if len(kept) == len(state):
        raise ValueError("pretrain: no parameter of the pre-trained network matches the victim's "
                         "(different model configs?)")
    model.load_state_dict(state)
    return kept
