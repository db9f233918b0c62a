"""Engine options, reductions, checkpoint terms and the cost-model constants."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

StateDict = Mapping[str, torch.Tensor]

#: Norm floor of the reference code (original_code.md Sec. 2.2, ``MIN_NORM``).
MIN_NORM = 1e-8

#: reduction name -> (layerwise, normalise training side, normalise query side)
REDUCTIONS: dict[str, tuple[bool, bool, bool]] = {
    "dot": (False, False, False),
    "cosine": (False, True, True),
    "layerwise_cosine": (True, True, True),
    "train_cosine": (False, True, False),  # paper 000 Eq. 9: no query norm
    "layerwise_train_cosine": (True, True, False),
}

#: A term of a shared pass (:func:`~.score.score_matrices`): ``(reduction, use_multiplicity)``;
#: ``use_multiplicity=True`` applies each checkpoint's ``train_multiplicity`` (TracIn's interval
#: credit), ``False`` ignores it (TracInCP, GAS).
Term = tuple[str, bool]

STRATEGIES = ("auto", "kernel", "materialise")
PIXEL_GRAM_MODES = ("auto", "always", "never")

#: Cost-model weights (ours, calibrated on the benchmark CPU; only speed depends on them):
#: materialising costs ``T*di*do*W_MAT`` multiply-adds per example (im2col + batched GEMM with
#: a short inner dimension for few positions, the grouped weight-gradient kernel for many), plus
#: ``W_MEM`` per materialised value (memory traffic), plus the GEMM/norm ``di*do*(M+1)``.
W_MAT_FEW, W_MAT_MANY, W_MEM = 3.0, 0.3, 10.0
#: Cost of one strided addition in the pixel-Gram kernel, in multiply-adds (ours, measured).
W_STRIDED = 20.0


@dataclass
class WeightedCheckpoint:
    """One term of the checkpoint sum: parameters, weight ``w_c`` and optional per-training-
    example multiplicity ``m_c`` (``None`` = every example once)."""

    params: StateDict
    weight: float
    train_multiplicity: torch.Tensor | None = None


@dataclass(frozen=True)
class EngineOptions:
    """Settings of :func:`score_matrix` / :func:`score_matrices` (conventions of the reference
    code where marked, the rest only trade speed for memory)."""

    batch_size: int = 128  # training examples per forward/backward (ours)
    query_batch_size: int = 128  # query examples per forward/backward (ours)
    strategy: str | Mapping[str, str] = "auto"  # "auto" | "kernel" | "materialise", or per layer
    min_norm: float = MIN_NORM  # reference-code MIN_NORM
    skip_zero_query: bool = True  # reference code: checkpoint skipped when the test gradient is 0
    exploit_symmetry: bool = True  # training x training with identical sides: half the tiles
    memory_budget: int = 2 << 30  # bytes for held query features (ours)
    chunk_elems: int = 1 << 22  # largest temporary (elements): <= 16 MB stays in malloc's heap (ours)
    device: str = "cpu"
    #: conv kernel identity through the pixel Gram: "auto" (when cheaper), "always", "never"
    pixel_gram: str = "auto"
    #: above this many positions a conv layer is materialised with the grouped weight-gradient
    #: kernel, at or below it with im2col + batched GEMM (ours, measured on the benchmark CPU)
    conv_grouped_min_positions: int = 100
    #: :func:`score_matrices` with terms with and without multiplicity: False (default) scores
    #: the credited rows in their own batches (every term bit-identical to scoring it alone);
    #: True takes them from the all-rows batches (one set of batches, saving the credited
    #: fraction; those terms then match to float32 rounding only: batched kernels round
    #: per-example results differently in different batches).  Ours.
    share_multiplicity_batches: bool = False

    def __post_init__(self) -> None:
        vals = self.strategy.values() if isinstance(self.strategy, Mapping) else [self.strategy]
        bad = [v for v in vals if v not in STRATEGIES]
        if bad:
            raise ValueError(f"strategy must be one of {STRATEGIES} (or a mapping layer -> one of "
                             f"them); got {bad}")
        if self.batch_size < 1 or self.query_batch_size < 1:
            raise ValueError("batch_size and query_batch_size must be >= 1")
        if self.pixel_gram not in PIXEL_GRAM_MODES:
            raise ValueError(f"pixel_gram must be one of {PIXEL_GRAM_MODES}; got {self.pixel_gram!r}")

    def strategy_for(self, name: str) -> str:
        """The requested strategy of layer ``name``."""
        if isinstance(self.strategy, Mapping):
            return self.strategy.get(name, "auto")
        return self.strategy
