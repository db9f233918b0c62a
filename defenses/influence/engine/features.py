"""Features: per-example gradients of one parameter tensor, in compact form."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from .options import W_STRIDED

#: (input as N x C x H x W, kernel size, dilation, padding, stride) of a conv layer
Geometry = tuple[torch.Tensor, tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass
class Dense:
    """Per-example vectors ``x`` of shape ``(B, P)`` (flattened in the parameter's layout)."""

    x: torch.Tensor

    @property
    def batch(self) -> int:
        return self.x.shape[0]


@dataclass
class Factored:
    """``g_i = sum_t G[i, k, :, t] (x) A[i, k, :, t]`` for each group ``k``.

    ``a``: ``(B, groups, d_in, T)``, ``g``: ``(B, groups, d_out, T)``; the materialised gradient
    is ``(B, groups * d_out * d_in)`` in the layout of a Linear/Conv weight."""

    a: torch.Tensor
    g: torch.Tensor

    @property
    def batch(self) -> int:
        return self.a.shape[0]


@dataclass
class Indexed:
    """Embedding-weight gradient ``g_i = sum_t e_{idx[i, t]} G[i, t]^T`` (``V x d``)."""

    idx: torch.Tensor  # (B, T) long
    g: torch.Tensor  # (B, T, d)
    num_embeddings: int

    @property
    def batch(self) -> int:
        return self.idx.shape[0]


@dataclass
class ConvFeature:
    """Conv weight gradient kept as the layer's raw input ``a (B, C_in, *in)`` and output
    gradient ``g (B, C_out, *out)``; :meth:`factored` unfolds it (im2col) for the kernel
    identity, :func:`~.algebra.materialise` forms per-example gradients directly."""

    a: torch.Tensor
    g: torch.Tensor
    mod: nn.Module  # the Conv1d / Conv2d (geometry only)
    _factored: Factored | None = None

    @property
    def batch(self) -> int:
        return self.a.shape[0]

    @property
    def positions(self) -> int:
        return self.g[0, 0].numel()

    @property
    def unfolded(self) -> bool:
        """Whether :meth:`factored` has run (the im2col form is then used everywhere)."""
        return self._factored is not None

    def geometry(self) -> Geometry:
        """The layer as a 2-d convolution (a Conv1d as a ``1 x L`` image)."""
        mod = self.mod
        if self.a.dim() == 3:
            pad = 0 if mod.padding == "valid" else mod.padding[0]
            return (self.a[:, :, None, :], (1, mod.kernel_size[0]), (1, mod.dilation[0]), (0, pad),
                    (1, mod.stride[0]))
        pad = (0, 0) if mod.padding == "valid" else tuple(mod.padding)
        return self.a, tuple(mod.kernel_size), tuple(mod.dilation), pad, tuple(mod.stride)

    def pixel_cheaper(self, mode: str) -> bool:
        """Whether the pixel-Gram form of the kernel identity is used (``mode`` "always" /
        "never", or "auto": when it costs less than the im2col form).  ``a_t . a_s =
        sum_kk P[idx_kk(t), idx_kk(s)]`` with ``P`` the Gram of padded input pixels (``L^2 C_in``
        instead of ``T^2 C_in kk``); ours, exact either way."""
        if mode == "never":
            return False
        if mode == "always":
            return True
        return self.pixel_cost() < self.unfold_cost()

    def pixel_cost(self) -> float:
        """Per pair and group: pixel Gram + kk strided additions of T x T blocks (weighted by
        :data:`~.options.W_STRIDED`; the output-gradient Gram is common to both forms)."""
        a4, ksz, _, (ph, pw), _ = self.geometry()
        big_l = (a4.shape[2] + 2 * ph) * (a4.shape[3] + 2 * pw)
        return (big_l * big_l * (a4.shape[1] // self.mod.groups)
                + W_STRIDED * ksz[0] * ksz[1] * self.positions ** 2)

    def unfold_cost(self) -> int:
        """Per pair and group: the patch Gram of the im2col form."""
        return self.positions ** 2 * self.mod.weight[0].numel()

    def factored(self) -> Factored:
        """The im2col form (computed once, then kept)."""
        if self._factored is None:
            a4, ksz, dil, pad, st = self.geometry()
            cols = F.unfold(a4, ksz, dilation=dil, padding=pad, stride=st)  # (B, Cin*k, T)
            b, k, t = self.batch, self.mod.groups, cols.shape[-1]
            self._factored = Factored(cols.reshape(b, k, -1, t),
                                      self.g.reshape(b, k, self.mod.out_channels // k, t))
        return self._factored


Feature = Union[Dense, Factored, Indexed, ConvFeature]


class Workspace:
    """Reusable output buffers, one per shape: a fresh large allocation costs page faults on
    every call (glibc returns blocks above 32 MB to the OS), a reused one does not."""

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (tuple(shape), like.dtype, like.device)
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf
