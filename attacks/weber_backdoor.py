"""Weber et al.'s vision backdoor as paper 000 Sec. 6.1 runs it (registered ``weber-backdoor``).

Binary CIFAR-10 task of the pair (y_targ, y_adv), relabelled so the lower original id is 0
(reference-code).  The first ``n_adv`` (after a shuffle) training images of class ``y_targ`` get
the trigger and label ``y_adv``, in place (reference-code: "the first BACKDOOR_CNT training
images of the target class get x + d and label y_adv"; paper 000: |D_adv| = 150 of |D_tr| =
10,000).  Triggers (``delta`` = the trigger's l2 norm before clipping):

* ``one-pixel``:  pixel (15, 15), all C channels, ``+ delta / sqrt(C)``;
* ``four-pixel``: pixels (15, 15), (16, 16), (14, 16), (16, 14), all channels, ``+ delta / sqrt(4 C)``;
* ``blend``:      one fixed ``N(0, I)`` draw of shape C x H x W rescaled to l2 norm ``delta``,
  added to every triggered image.

Clipping: pixel triggers ``min(x, 1)`` (reference-code, both RAB and paper 000's code); blend
none (reference-code RAB ``attack_lib.py``; paper 000's internal code clamps to [0, 1], available
as ``clip="range"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacks import triggers as T
from attacks.patterns import BackdoorConfig, Task, TriggerBackdoor
from benchmark.api import RunContext
from benchmark.registry import attacks

TRIGGERS = ("one-pixel", "four-pixel", "blend")


@dataclass(frozen=True)
class WeberConfig(BackdoorConfig):
    """Weber et al. backdoor (paper 000 Sec. 6.1 (2)).

    y_targ, y_adv  airplane (0) -> bird (2): paper 000 Fig. 3 / Sec. 6.1 pair "plane -> bird"
                   (the other pair is automobile (1) -> dog (5)); reference-code RAB pair ids.
    classes        ``None`` = the binary task {y_targ, y_adv} (paper 000 Sec. 6.1).
    epsilon, n_adv n_adv = 150 (paper 000 Sec. 6.1: |D_adv| = 150, 1.5 % of |D_tr| = 10,000).
    mode           "replace": poisoned in place (reference-code).
    n_train        ``None`` = every training image of the two classes, 10,000 (paper 000 Sec. 6.1).
    trigger        "one-pixel" | "four-pixel" | "blend" (paper 000 Sec. 6.1; Weber et al.).
    delta          l2 norm of the trigger, 1.0 (reference-code: paper 000's BACKDOOR_DELTA
                   default; the per-experiment value is in the missing supplement).
    clip           ``None`` = the trigger's reference behaviour ("max" for pixel triggers,
                   "none" for blend); or "none" | "max" | "range".
    center         (row, col) of the centre pixel; ``None`` = (H//2 - 1, W//2 - 1) = (15, 15) on
                   CIFAR-10 (reference-code CENTER_ROW = CENTER_COL = 15).
    min_perturb_ratio  only training images whose post-clip perturbation has l2 norm >=
                   ratio * delta may become poisons (reference-code MIN_PERTURB_RATIO; default
                   0.0 = off, ours: its value is not recoverable).
    """

    y_targ: int | None = 0
    y_adv: int = 2
    classes: tuple[int, ...] | None = None
    epsilon: float | None = None
    n_adv: int | None = 150
    mode: str = "replace"
    trigger: str = "one-pixel"
    delta: float = 1.0
    clip: str | None = None
    center: tuple[int, int] | None = None
    min_perturb_ratio: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.y_targ is None:
            raise ValueError("weber-backdoor is a binary pair attack: set y_targ to a class id")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {self.trigger!r}")
        if self.delta <= 0:
            raise ValueError(f"delta (the trigger's l2 norm) must be > 0, got {self.delta}")
        if self.clip is not None and self.clip not in T.CLIP_MODES:
            raise ValueError(f"clip must be None or one of {T.CLIP_MODES}, got {self.clip!r}")
        if not 0 <= self.min_perturb_ratio <= 1:
            raise ValueError("min_perturb_ratio must lie in [0, 1]")


@attacks.register("weber-backdoor",
                  "Weber et al. one-pixel / four-pixel / blend trigger, binary CIFAR-10 pair (paper 000 Sec. 6.1)")
class WeberBackdoor(TriggerBackdoor):
    Config = WeberConfig
    modalities = ("image",)

    def task_classes(self) -> tuple[int, ...] | None:
        c = self.config
        return c.classes if c.classes is not None else (c.y_targ, c.y_adv)

    @property
    def clip_mode(self) -> str:
        c = self.config
        if c.clip is not None:
            return c.clip
        return "none" if c.trigger == "blend" else "max"

    def pixels(self, height: int, width: int) -> tuple[T.Pixel, ...]:
        c = self.config
        center = tuple(c.center) if c.center is not None else (height // 2 - 1, width // 2 - 1)
        offsets = T.WEBER_ONE_PIXEL_OFFSETS if c.trigger == "one-pixel" else T.WEBER_FOUR_PIXEL_OFFSETS
        return T.offset_pixels(center, offsets)

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        x = task.train.inputs
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError("weber-backdoor needs image inputs N x C x H x W")
        self._shape = tuple(x.shape[1:])
        self._pattern = None
        if self.config.trigger == "blend":
            self._pattern = T.gaussian_pattern(self._shape, self.config.delta, rng)

    def apply_trigger(self, inputs, rng, split, task):
        c = self.config
        if c.trigger == "blend":
            return T.add_pattern(inputs, self._pattern, self.clip_mode)
        pix = self.pixels(*inputs.shape[-2:])
        amount = T.pixel_amount(c.delta, len(pix), inputs.shape[1])
        return T.add_to_pixels(inputs, pix, amount, self.clip_mode)

    def filter_candidates(self, task: Task, pool: torch.Tensor) -> torch.Tensor:
        ratio = self.config.min_perturb_ratio
        if ratio <= 0:
            return pool
        x = task.train.inputs[pool]
        d = (self.apply_trigger(x, None, "train", task) - x).flatten(1).norm(dim=1)
        return pool[d >= ratio * self.config.delta - 1e-6]

    def trigger_info(self) -> dict[str, Any]:
        c = self.config
        info: dict[str, Any] = {"trigger": c.trigger, "delta": c.delta, "clip": self.clip_mode}
        if c.trigger == "blend":
            info["pattern_l2"] = float(self._pattern.norm())
            info["pattern"] = self._pattern
        else:
            h, w = self._shape[-2:]
            info["pixels"] = [list(p) for p in self.pixels(h, w)]
            info["per_entry"] = T.pixel_amount(c.delta, len(info["pixels"]), self._shape[0])
        return info
