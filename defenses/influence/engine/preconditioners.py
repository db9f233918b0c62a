"""Preconditioners: linear maps applied to the query side (e.g. a damped inverse Hessian)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch


class Preconditioner(Protocol):
    """Linear map applied to the query side: ``(M, P) -> (M, P)`` over parameters ``names``
    (their flattened gradients concatenated in this order)."""

    names: Sequence[str]

    def __call__(self, q: torch.Tensor) -> torch.Tensor: ...


@dataclass
class MatrixPreconditioner:
    """``q -> q @ matrix^T`` (e.g. an explicit damped inverse Hessian, symmetric)."""

    names: Sequence[str]
    matrix: torch.Tensor

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return (q.to(self.matrix.dtype) @ self.matrix.T).to(q.dtype)


@dataclass
class FunctionPreconditioner:
    """``q -> solve(q)`` for an iterative solver (CG, LiSSA)."""

    names: Sequence[str]
    solve: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        return self.solve(q).to(q.dtype)
