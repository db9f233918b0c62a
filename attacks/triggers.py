"""Trigger math shared by the backdoor attacks (pure functions on raw inputs).

Images are float tensors ``N x C x H x W`` in ``[0, 1]``; pixel positions are ``(row, col)``.
Waveforms are 1-D float tensors in ``[-1, 1]``.  No function here draws randomness unless it is
handed a ``numpy.random.Generator``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

Pixel = tuple[int, int]

#: Weber et al.'s CIFAR-10 trigger pixels (reference-code: RAB ``attack_lib.py`` and paper 000's
#: internal ``datasets/cifar.py``, CENTER_ROW = CENTER_COL = 15).
WEBER_CENTER: Pixel = (15, 15)
WEBER_ONE_PIXEL_OFFSETS: tuple[Pixel, ...] = ((0, 0),)
WEBER_FOUR_PIXEL_OFFSETS: tuple[Pixel, ...] = ((0, 0), (1, 1), (-1, 1), (1, -1))
WEBER_ONE_PIXEL: tuple[Pixel, ...] = ((15, 15),)
WEBER_FOUR_PIXEL: tuple[Pixel, ...] = ((15, 15), (16, 16), (14, 16), (16, 14))


def offset_pixels(center: Pixel, offsets: Sequence[Pixel]) -> tuple[Pixel, ...]:
    return tuple((center[0] + dr, center[1] + dc) for dr, dc in offsets)

#: Tran et al.'s shapes as offsets from the anchor pixel (reference-code: MadryLab
#: backdoor_data_poisoning ``poison(x, method, pos, col)``): ``pixel`` = 1 pixel, ``pattern`` =
#: the anchor and its 4 diagonal neighbours (an X), ``ell`` = anchor, (r+1, c), (r, c+1).
TRAN_SHAPES: dict[str, tuple[Pixel, ...]] = {
    "pixel": ((0, 0),),
    "pattern": ((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)),
    "ell": ((0, 0), (1, 0), (0, 1)),
}

CLIP_MODES = ("none", "max", "range")


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"expected an image batch N x C x H x W, got {getattr(x, 'shape', type(x))}")


def _check_pixels(x: torch.Tensor, pixels: Sequence[Pixel]) -> None:
    h, w = x.shape[-2:]
    for r, c in pixels:
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f"trigger pixel {(r, c)} lies outside the {h}x{w} image; "
                             f"choose positions inside it")


def clip(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``none``: leave as is; ``max``: ``min(x, 1)`` only (the Weber/Hammoudeh pixel triggers);
    ``range``: clamp to ``[0, 1]``."""
    if mode == "none":
        return x
    if mode == "max":
        return x.clamp(max=1.0)
    if mode == "range":
        return x.clamp(0.0, 1.0)
    raise ValueError(f"unknown clip mode {mode!r}; use one of {CLIP_MODES}")


def pixel_amount(delta: float, n_pixels: int, n_channels: int) -> float:
    """Per-entry increment so that ``n_pixels x n_channels`` equal entries have l2 norm ``delta``:
    ``delta / sqrt(n_pixels * n_channels)`` (reference-code: Weber one-pixel ``delta/sqrt(3)``,
    four-pixel ``delta/sqrt(12)`` on 3 channels)."""
    if delta < 0:
        raise ValueError("delta (the trigger's l2 norm) must be >= 0")
    return float(delta) / math.sqrt(n_pixels * n_channels)


def add_to_pixels(x: torch.Tensor, pixels: Sequence[Pixel], amount: float,
                  clip_mode: str = "max") -> torch.Tensor:
    """Return a copy of ``x`` with ``amount`` added to every channel of each pixel in ``pixels``."""
    _check_images(x)
    _check_pixels(x, pixels)
    out = x.clone()
    rows = torch.tensor([p[0] for p in pixels])
    cols = torch.tensor([p[1] for p in pixels])
    out[:, :, rows, cols] = clip(out[:, :, rows, cols] + amount, clip_mode)
    return out


def set_pixels(x: torch.Tensor, pixels: Sequence[Pixel], color: Sequence[float]) -> torch.Tensor:
    """Return a copy of ``x`` whose ``pixels`` are set to ``color`` (one value per channel, in [0, 1])."""
    _check_images(x)
    _check_pixels(x, pixels)
    if len(color) != x.shape[1]:
        raise ValueError(f"color has {len(color)} values but the images have {x.shape[1]} channels")
    out = x.clone()
    col = torch.as_tensor(color, dtype=x.dtype).view(1, -1, 1)
    rows = torch.tensor([p[0] for p in pixels])
    cols = torch.tensor([p[1] for p in pixels])
    out[:, :, rows, cols] = col.expand(len(x), -1, len(pixels))
    return out


def shape_pixels(shape: str, anchor: Pixel) -> tuple[Pixel, ...]:
    """Absolute pixels of one of Tran et al.'s shapes anchored at ``anchor``."""
    if shape not in TRAN_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; use one of {sorted(TRAN_SHAPES)}")
    r, c = anchor
    return tuple((r + dr, c + dc) for dr, dc in TRAN_SHAPES[shape])


def shape_anchor_range(shape: str, height: int, width: int) -> tuple[range, range]:
    """Anchors (rows, cols) for which every pixel of ``shape`` lies inside the image."""
    offs = TRAN_SHAPES[shape]
    r0, r1 = -min(o[0] for o in offs), height - max(o[0] for o in offs)
    c0, c1 = -min(o[1] for o in offs), width - max(o[1] for o in offs)
    return range(r0, r1), range(c0, c1)


def paste_patch(x: torch.Tensor, patch: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """Return a copy of ``x`` with ``patch`` (C x h x w) pasted with its top-left at (top, left)."""
    _check_images(x)
    c, h, w = patch.shape
    if c != x.shape[1]:
        raise ValueError(f"patch has {c} channels, images have {x.shape[1]}")
    if top < 0 or left < 0 or top + h > x.shape[2] or left + w > x.shape[3]:
        raise ValueError(f"a {h}x{w} patch at ({top}, {left}) does not fit a {x.shape[2]}x{x.shape[3]} image")
    out = x.clone()
    out[:, :, top:top + h, left:left + w] = patch.to(x.dtype)
    return out


def gaussian_pattern(shape: Sequence[int], norm: float, rng: np.random.Generator) -> torch.Tensor:
    """One N(0, I) draw of ``shape`` rescaled to l2 norm ``norm`` (Weber et al.'s blend trigger;
    reference-code RAB ``attack_lib.py``; paper 000 Sec. 6.1 "fixed N(0, I) Gaussian noise")."""
    noise = rng.standard_normal(tuple(shape))
    noise = noise / np.linalg.norm(noise.ravel()) * norm
    return torch.from_numpy(noise.astype(np.float32))


def add_pattern(x: torch.Tensor, pattern: torch.Tensor, clip_mode: str = "none") -> torch.Tensor:
    """``x + pattern`` for every image (pattern broadcast over the batch), then ``clip``."""
    _check_images(x)
    if tuple(pattern.shape) != tuple(x.shape[1:]):
        raise ValueError(f"pattern shape {tuple(pattern.shape)} != image shape {tuple(x.shape[1:])}")
    return clip(x + pattern.to(x.dtype).unsqueeze(0), clip_mode)


def half_mix(a: torch.Tensor, b: torch.Tensor, rng: np.random.Generator,
             jitter: int = 3) -> torch.Tensor:
    """Lin et al.'s half mixer (reference-code composite-attack ``HalfMixer``, re-derived):
    per image, the order of (a, b) is swapped with probability 1/2; the split is vertical or
    horizontal with probability 1/2; the first part's size is ``size // 2 + j``,
    ``j ~ U{-jitter..jitter}``; each part is a window of that size cut from its own image at a
    uniformly random offset ("shake") and the two windows are pasted side by side (no gap)."""
    _check_images(a)
    if a.shape != b.shape:
        raise ValueError(f"half_mix needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    out = torch.empty_like(a)
    h, w = a.shape[-2:]
    for i in range(len(a)):
        first, second = (a[i], b[i]) if rng.random() < 0.5 else (b[i], a[i])
        vertical_split = rng.random() < 0.5  # True: left | right halves
        size = w if vertical_split else h
        j = int(rng.integers(-jitter, jitter + 1)) if jitter > 0 else 0
        n1 = min(max(size // 2 + j, 1), size - 1)
        n2 = size - n1
        o1 = int(rng.integers(0, size - n1 + 1))
        o2 = int(rng.integers(0, size - n2 + 1))
        if vertical_split:
            out[i, :, :, :n1] = first[:, :, o1:o1 + n1]
            out[i, :, :, n1:] = second[:, :, o2:o2 + n2]
        else:
            out[i, :, :n1, :] = first[:, o1:o1 + n1, :]
            out[i, :, n1:, :] = second[:, o2:o2 + n2, :]
    return out


# -- audio ---------------------------------------------------------------------------------

def noise_burst(n_samples: int, rms: float, rng: np.random.Generator,
                distribution: str = "gaussian") -> torch.Tensor:
    """A fixed white-noise burst of ``n_samples`` with RMS ``rms`` (before clipping to [-1, 1]).
    ``gaussian``: N(0, rms^2); ``uniform``: U(-sqrt(3) rms, sqrt(3) rms)."""
    if n_samples < 1:
        raise ValueError("the noise burst must last at least one sample; raise duration_s")
    if distribution == "gaussian":
        n = rng.standard_normal(n_samples) * rms
    elif distribution == "uniform":
        n = rng.uniform(-math.sqrt(3) * rms, math.sqrt(3) * rms, n_samples)
    else:
        raise ValueError(f"unknown noise distribution {distribution!r}; use 'gaussian' or 'uniform'")
    return torch.from_numpy(np.clip(n, -1.0, 1.0).astype(np.float32))


def insert_burst(wave: torch.Tensor, burst: torch.Tensor, placement: str = "overwrite") -> torch.Tensor:
    """``overwrite``: the burst replaces the first ``len(burst)`` samples (a shorter waveform is
    extended to the burst's length); ``prepend``: the burst is concatenated before the waveform."""
    if wave.dim() != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(wave.shape)}")
    burst = burst.to(wave.dtype)
    if placement == "overwrite":
        if len(wave) <= len(burst):
            return burst.clone()
        return torch.cat([burst, wave[len(burst):]])
    if placement == "prepend":
        return torch.cat([burst, wave])
    raise ValueError(f"unknown placement {placement!r}; use 'overwrite' or 'prepend'")
