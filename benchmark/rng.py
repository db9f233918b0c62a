"""Explicit randomness: every component gets its own generator derived from
(suite seed, trial index, component name).  Same seed => same numbers."""
from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(*keys: object) -> int:
    """A 63-bit seed derived deterministically from any sequence of keys."""
    text = "\x1f".join(str(k) for k in keys)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def numpy_rng(*keys: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*keys))


def torch_rng(*keys: object) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(*keys))
    return g
