"""Tran et al.'s pixel backdoor (spectral-signatures paper), as used by paper 001 Sec. 4.1.

"The attack method used in Tran et al. (2018) which generates a random shape, position, and
color for the backdoor" (paper 001 Sec. 4.1).  Shapes (reference-code MadryLab
``backdoor_data_poisoning``): ``pixel`` (1 pixel), ``pattern`` (an X of 5 pixels: the anchor and
its 4 diagonal neighbours), ``ell`` (anchor, (r+1, c), (r, c+1)); the pixels are *set* to the
colour in every channel.  Shape, anchor and colour are drawn once per attack from ``rng``
unless fixed in the config.
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


@dataclass(frozen=True)
class SpectralPixelConfig(BackdoorConfig):
    """Pair (y_targ, y_adv) = (airplane, bird), epsilon 0.05, mode "add": see BackdoorConfig.

    shape     ``None`` = uniform over {pixel, pattern, ell} (paper 001 Sec. 4.1 "random shape";
              shapes from reference-code).  Tran's example config uses "pixel".
    position  anchor (row, col); ``None`` = uniform over anchors where the whole shape fits
              (paper 001 Sec. 4.1 "random position"; the range is ours).  Tran's example: (11, 16).
    color     RGB in 0..255; ``None`` = each channel uniform in {0..255} (paper 001 Sec. 4.1
              "random color"; the distribution is ours).  Tran's example: (101, 0, 25).
    """

    shape: str | None = None
    position: tuple[int, int] | None = None
    color: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shape is not None and self.shape not in T.TRAN_SHAPES:
            raise ValueError(f"shape must be None or one of {sorted(T.TRAN_SHAPES)}, got {self.shape!r}")
        if self.color is not None and not all(0 <= v <= 255 for v in self.color):
            raise ValueError(f"color values must lie in 0..255, got {self.color}")


@attacks.register("spectral-pixel",
                  "Tran et al. pixel backdoor: random shape/position/colour set in place (paper 001 Sec. 4.1)")
class SpectralPixel(TriggerBackdoor):
    Config = SpectralPixelConfig
    modalities = ("image",)

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        x = task.train.inputs
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError("spectral-pixel needs image inputs N x C x H x W")
        ch, h, w = x.shape[1:]
        c = self.config
        shape = c.shape if c.shape is not None else sorted(T.TRAN_SHAPES)[int(rng.integers(len(T.TRAN_SHAPES)))]
        if c.position is not None:
            anchor = tuple(int(v) for v in c.position)
        else:
            rows, cols = T.shape_anchor_range(shape, h, w)
            anchor = (int(rng.integers(rows.start, rows.stop)), int(rng.integers(cols.start, cols.stop)))
        color = tuple(int(v) for v in c.color) if c.color is not None else \
            tuple(int(v) for v in rng.integers(0, 256, size=ch))
        if len(color) != ch:
            raise ValueError(f"color has {len(color)} values but the images have {ch} channels")
        self._shape, self._anchor, self._color = shape, anchor, color
        self._pixels = T.shape_pixels(shape, anchor)

    def apply_trigger(self, inputs, rng, split, task):
        return T.set_pixels(inputs, self._pixels, [v / 255.0 for v in self._color])

    def trigger_info(self) -> dict[str, Any]:
        return {"shape": self._shape, "anchor": list(self._anchor), "color": list(self._color),
                "pixels": [list(p) for p in self._pixels]}
