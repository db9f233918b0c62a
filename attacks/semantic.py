"""Semantic backdoor (Bagdasaryan et al.; paper 001 Sec. 4.1): training images of ``y_targ``
that carry a *natural* feature are relabelled ``y_adv``; no input is modified.

The original hand-picked images (e.g. green cars -> bird) are unavailable, so the feature is
chosen programmatically: every image gets a feature score and the ``n_adv`` highest-scoring
source-class training images become the poisons (relabelled in place).  The score of the last
one is the threshold ``tau``; the targets are the source-class *test* images scoring ``>= tau``,
unmodified (``targets_clean`` is ``None``: there is no trigger to remove); ``non_targets`` are
the other clean test images.

Feature scores (``feature``):

* ``green`` / ``red`` / ``blue``: fraction of pixels whose HSV hue lies in the colour's range with
  saturation >= 0.25 and value >= 0.2 (green hue 70-170 deg: attack-paper Bagdasaryan's "green
  cars", the range is ours; red 330-30 deg, blue 190-260 deg: ours);
* ``vertical-stripes``: mean |horizontal gradient| / (mean |vertical gradient| + 1e-3) of the grey
  image (ours, after Bagdasaryan's "vertical stripes on the background wall").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from attacks.patterns import (CLEAN, POISON, PoisonCounts, assemble, choose, count_poisons, make_task, subsample,
                              task_size)
from benchmark.api import Attack, AttackedData, RunContext
from benchmark.data.types import RawDataset, Split, select
from benchmark.registry import attacks

HUE_RANGES = {"green": (70.0, 170.0), "red": (330.0, 30.0), "blue": (190.0, 260.0)}
FEATURES = (*HUE_RANGES, "vertical-stripes")
MIN_SATURATION, MIN_VALUE = 0.25, 0.2  # ours


def hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of RGB images N x 3 x H x W."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v, _ = x.max(dim=1)
    mn, _ = x.min(dim=1)
    d = v - mn
    s = torch.where(v > 0, d / v.clamp(min=1e-12), torch.zeros_like(v))
    safe = d.clamp(min=1e-12)
    h = torch.where(v == r, ((g - b) / safe) % 6,
                    torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    h = torch.where(d > 0, h % 360.0, torch.zeros_like(h))
    return h, s, v


def feature_score(x: torch.Tensor, feature: str) -> torch.Tensor:
    """One score per image; higher = more of the feature."""
    if feature in HUE_RANGES:
        if x.shape[1] != 3:
            raise ValueError(f"colour feature {feature!r} needs RGB images, got {x.shape[1]} channels")
        lo, hi = HUE_RANGES[feature]
        h, s, v = hsv(x)
        in_hue = (h >= lo) & (h <= hi) if lo <= hi else (h >= lo) | (h <= hi)
        return (in_hue & (s >= MIN_SATURATION) & (v >= MIN_VALUE)).float().mean(dim=(1, 2))
    if feature == "vertical-stripes":
        grey = x.mean(dim=1)
        gx = (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean(dim=(1, 2))
        gy = (grey[:, 1:, :] - grey[:, :-1, :]).abs().mean(dim=(1, 2))
        return gx / (gy + 1e-3)
    raise ValueError(f"unknown feature {feature!r}; use one of {FEATURES}")


@dataclass(frozen=True)
class SemanticConfig:
    """y_targ, y_adv     airplane (0) -> bird (2): paper 001 Sec. 4.1 pair (airplane, bird);
                        ``y_targ=None`` = images of every class but y_adv (all-to-one).
    classes             task classes, ``None`` = all (as BackdoorConfig).
    feature             "green" (attack-paper: Bagdasaryan's green cars; programmatic, ours).
    epsilon / n_adv     0.05 (paper 001 Sec. 4.1; exactly one of the two is set).  epsilon is
                        |D_adv| / |D_tr| of the trained set, as for every attack (paper 001 Sec.
                        3.3: epsilon N poisons in D_train): n_adv = round(epsilon * n_train).
                        Until issue 8 this attack counted epsilon over the source class of the
                        whole split (250 = 5 % of 5,000 airplanes at small, 2.5 % of |D_tr|).
    max_pool_fraction   at most this fraction of the source-class training images may be
                        relabelled: 0.5 (ours: beyond that the "feature" is the class itself).
    min_feature_score   every poison must score strictly above this: 0.0 (ours), i.e. it must
                        show the feature at all.
    n_train, n_test, n_targets  as BackdoorConfig (``None`` = all).
    """

    y_targ: int | None = 0
    y_adv: int = 2
    classes: tuple[int, ...] | None = None
    feature: str = "green"
    epsilon: float | None = 0.05
    n_adv: int | None = None
    max_pool_fraction: float = 0.5
    min_feature_score: float = 0.0
    n_train: int | None = None
    n_test: int | None = None
    n_targets: int | None = None

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {self.feature!r}")
        if self.y_targ is not None and self.y_targ == self.y_adv:
            raise ValueError("y_targ and y_adv must differ")
        if self.epsilon is not None and not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must lie in (0, 1), got {self.epsilon}")
        if not 0 < self.max_pool_fraction <= 1:
            raise ValueError("max_pool_fraction must lie in (0, 1]")


@attacks.register("semantic",
                  "Semantic backdoor: source-class images with a natural feature (e.g. green) relabelled (paper 001 Sec. 4.1)")
class Semantic(Attack):
    Config = SemanticConfig
    modalities = ("image",)
    epsilon_definition = (
        "|D_adv| / |D_tr| of the trained set: n_adv = round(eps * n_train); poisons are "
        "relabelled in place, |D_tr| = n_train")

    def counts(self, n_all: int) -> PoisonCounts:
        """Poison counts for a task with ``n_all`` training examples, from the config alone."""
        c = self.config
        n_train = c.n_train if c.n_train is not None else n_all
        return PoisonCounts(n_train, count_poisons(c.epsilon, c.n_adv, n_train))

    def poison_counts(self, class_sizes: Sequence[int]) -> PoisonCounts:
        """What :meth:`craft` would produce on a training split with ``class_sizes[k]`` examples
        of original class ``k`` (no data needed; the feature checks are not made)."""
        return self.counts(task_size(class_sizes, self.config.classes))

    def craft(self, data: RawDataset, rng: np.random.Generator, context: RunContext) -> AttackedData:
        self.check_dataset(data)
        c = self.config
        task = make_task(data, c.classes)
        ya = task.label(c.y_adv)
        src = [task.label(c.y_targ)] if c.y_targ is not None else \
            [k for k in range(len(task.class_ids)) if k != ya]
        n_all = len(task.train)
        counts = self.counts(n_all)
        n_train, n_adv = counts.n_train, counts.n_adv
        pool = torch.nonzero(torch.isin(task.train.labels, torch.tensor(src))).ravel()
        if n_adv > c.max_pool_fraction * len(pool):
            raise ValueError(
                f"semantic: {n_adv} poisons would relabel {n_adv / len(pool):.0%} of the {len(pool)} "
                f"source-class training images (max_pool_fraction={c.max_pool_fraction}); lower "
                f"epsilon/n_adv, set y_targ=None (feature images of every class), or raise max_pool_fraction")
        scores = feature_score(task.train.inputs[pool], c.feature)
        order = torch.argsort(-scores, stable=True)
        chosen = pool[order[:n_adv]]
        tau = float(scores[order[n_adv - 1]])
        if tau <= c.min_feature_score:
            n_ok = int((scores > c.min_feature_score).sum())
            raise ValueError(
                f"semantic: only {n_ok} source-class training images have {c.feature!r} score > "
                f"{c.min_feature_score}, fewer than the {n_adv} poisons; lower epsilon/n_adv, "
                f"choose another feature, or set y_targ=None (feature images of every class)")

        rest = np.setdiff1d(np.arange(n_all), chosen.numpy())
        clean_idx = choose(rng, rest, n_train - n_adv, "clean training images").sort().values
        asm = assemble([
            (select(task.train.inputs, clean_idx), task.train.labels[clean_idx], CLEAN, clean_idx),
            (select(task.train.inputs, chosen), torch.full((n_adv,), ya), POISON, chosen),
        ], rng)

        t_pool = torch.nonzero(torch.isin(task.test.labels, torch.tensor(src))).ravel()
        t_scores = feature_score(task.test.inputs[t_pool], c.feature)
        t_ok = t_pool[t_scores >= tau]
        if len(t_ok) == 0:
            raise ValueError(f"no source-class test image has feature score >= {tau:.4f}; "
                             f"raise epsilon or pick another feature")
        t_idx = t_ok if c.n_targets is None or c.n_targets >= len(t_ok) else \
            choose(rng, t_ok.numpy(), c.n_targets, "feature test images").sort().values
        targets = task.test.subset(t_idx)
        test, test_keep = subsample(task.test, c.n_test, rng, "clean test images")
        # the targets are clean test images themselves: keep them out of the non-targets
        nt_keep = test_keep[~torch.isin(test_keep, t_idx)]
        is_poison = asm.kind == POISON
        info: dict[str, Any] = {
            "feature": c.feature, "threshold": tau, "n_adv": n_adv, "n_train": len(asm.train),
            "n_clean": len(clean_idx), "epsilon_effective": n_adv / len(asm.train),
            "n_targets": len(targets), "n_feature_test_images": len(t_ok),
            "poison_score_min": tau, "poison_score_max": float(scores[order[0]]),
            "kind": asm.kind,
            "train_raw_index": task.train_index[asm.origin],
            "poison_raw_index": task.train_index[asm.origin[is_poison]],
            "target_test_raw_index": task.test_index[t_idx],
            "test_raw_index": task.test_index[test_keep],
            "non_target_test_raw_index": task.test_index[nt_keep],
        }
        return AttackedData(
            train=asm.train, is_adv=asm.is_adv, test=test, targets=targets,
            y_adv=torch.full((len(targets),), ya), non_targets=task.test.subset(nt_keep),
            num_classes=len(task.class_ids), classes=task.classes, targets_clean=None,
            modality="image", info=info,
        )
