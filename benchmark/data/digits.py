"""``digits``: scikit-learn's embedded 8x8 handwritten digits (no data root needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.data.types import RawDataset, Split
from benchmark.registry import datasets

#: Fixed split (ours): a permutation with this seed, the last quarter is the test split.
SPLIT_SEED = 0
TEST_FRACTION = 0.25


@datasets.register("digits", "scikit-learn's embedded 8x8 digits (1,797 images, 10 classes; no data root)")
def load_digits(data_root: Path | None = None, cache_dir: Path | None = None, download: bool = False) -> RawDataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(labels)))
    n_test = int(round(TEST_FRACTION * len(labels)))
    test_idx, train_idx = order[:n_test], order[n_test:]
    return RawDataset(
        name="digits",
        modality="image",
        classes=[str(d) for d in range(10)],
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        source={"route": "sklearn.datasets.load_digits", "split_seed": SPLIT_SEED,
                "test_fraction": TEST_FRACTION},
    )
