"""BadNets (Gu et al. 2017): a small solid patch near a corner, poisoned inputs relabelled.

The field's standard baseline, in its common benchmark form (BackdoorBench
``config/attack/badnet/default.yaml``: all-to-one, target class 0, poison ratio 0.1, a 3 x 3 white
patch in the bottom-right corner of a 32 x 32 image).
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

CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


@dataclass(frozen=True)
class BadNetsConfig(BackdoorConfig):
    """y_targ      ``None`` = all-to-one: every class but y_adv is poisoned (attack-paper:
                   BackdoorBench all2one); set a class id for a single (y_targ, y_adv) pair.
    y_adv          0 (attack-paper: BackdoorBench default target 0).
    epsilon        0.1 of |D_tr| (attack-paper: BackdoorBench pratio 0.1).
    mode           "replace": poisoned in place (attack-paper: BackdoorBench).
    patch_size     3 (attack-paper: BackdoorBench 3 x 3 trigger image).
    value          patch value in every channel, 1.0 = white (attack-paper: BackdoorBench).
    corner         "bottom-right" (attack-paper: Gu et al. / BackdoorBench).
    margin         pixels between the patch and the image border: 1 (ours; BackdoorBench's
                   trigger image is not available here to check).
    """

    y_targ: int | None = None
    y_adv: int = 0
    epsilon: float | None = 0.1
    mode: str = "replace"
    patch_size: int = 3
    value: float = 1.0
    corner: str = "bottom-right"
    margin: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.corner not in CORNERS:
            raise ValueError(f"corner must be one of {CORNERS}, got {self.corner!r}")
        if self.patch_size < 1 or self.margin < 0:
            raise ValueError("patch_size must be >= 1 and margin >= 0")


@attacks.register("badnets", "BadNets: 3x3 white corner patch, all-to-one relabelling (Gu et al.; BackdoorBench form)")
class BadNets(TriggerBackdoor):
    Config = BadNetsConfig
    modalities = ("image",)

    def top_left(self, height: int, width: int) -> tuple[int, int]:
        c = self.config
        s, m = c.patch_size, c.margin
        top = height - s - m if c.corner.startswith("bottom") else m
        left = width - s - m if c.corner.endswith("right") else m
        return top, left

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        x = task.train.inputs
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError("badnets needs image inputs N x C x H x W")
        ch, h, w = x.shape[1:]
        s = self.config.patch_size
        self._patch = torch.full((ch, s, s), float(self.config.value))
        self._pos = self.top_left(h, w)

    def apply_trigger(self, inputs, rng, split, task):
        return T.paste_patch(inputs, self._patch, *self._pos)

    def trigger_info(self) -> dict[str, Any]:
        return {"patch_size": self.config.patch_size, "value": self.config.value,
                "top_left": list(self._pos)}
