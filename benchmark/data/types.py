"""Raw datasets as loaders return them (attacks act on raw inputs; featurizers run after).

Raw input conventions, by modality:

* ``image``: a float32 tensor ``N x C x H x W`` of pixels in ``[0, 1]`` (decoded from uint8).
* ``audio``: a list of 1-D float32 tensors (waveforms in ``[-1, 1]``, variable length) plus
  ``sample_rate``.
* ``text``: a list of strings.
* ``features``: a float32 tensor ``N x D`` (already numeric, e.g. tabular data).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch

RawInputs = Union[torch.Tensor, list]

DATA_ROOT_ENV = "BENCHMARK_DATA_ROOT"
CACHE_DIR_ENV = "BENCHMARK_CACHE_DIR"
MODALITIES = ("image", "audio", "text", "features")


class DatasetError(RuntimeError):
    """A dataset is missing or corrupt; the message names the file and the expected layout."""


@dataclass
class Split:
    """One split of raw examples."""

    inputs: RawInputs
    labels: torch.Tensor  # int64, shape (N,)

    def __post_init__(self) -> None:
        if not isinstance(self.labels, torch.Tensor):
            self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Sequence[int] | torch.Tensor) -> "Split":
        idx = torch.as_tensor(index, dtype=torch.long)
        return Split(select(self.inputs, idx), self.labels[idx].clone())


def select(inputs: RawInputs, idx: torch.Tensor) -> RawInputs:
    """Index raw inputs (tensor or list) with an index tensor."""
    if isinstance(inputs, torch.Tensor):
        return inputs[idx].clone()
    return [inputs[int(i)] for i in idx]


def concat(a: RawInputs, b: RawInputs) -> RawInputs:
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b], dim=0)
    return list(a) + list(b)


@dataclass
class RawDataset:
    """A dataset's train and test splits, raw, with what was read to build it."""

    name: str
    modality: str
    classes: list[str]
    train: Split
    test: Split
    sample_rate: int | None = None
    source: dict[str, Any] = field(default_factory=dict)  # which files/route were read

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """Content hash of both splits (inputs and labels) and the class names: two datasets
        with the same fingerprint hold the same data, whatever route or root they came from.
        Memoised on the object."""
        fp = self.__dict__.get("_fingerprint")
        if fp is None:
            h = hashlib.sha256(json.dumps([self.name, self.modality, self.classes, self.sample_rate]).encode())
            for split in (self.train, self.test):
                content_hash_update(h, split.inputs)
                content_hash_update(h, split.labels)
            fp = self.__dict__["_fingerprint"] = h.hexdigest()[:16]
        return fp


def content_hash_update(h: "hashlib._Hash", data: Any) -> None:
    """Feed a tensor (dtype, shape and bytes), array or list of strings/arrays into ``h``."""
    if isinstance(data, torch.Tensor):
        t = data.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(data, np.ndarray):
        h.update(f"{data.dtype}{data.shape}".encode())
        h.update(np.ascontiguousarray(data).tobytes())
    else:
        for item in data:
            if isinstance(item, str):
                h.update(item.encode() + b"\0")
            else:
                content_hash_update(h, item)


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """``--data-root`` flag, else ``$BENCHMARK_DATA_ROOT``, else ``./data``."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return Path("data")


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``--cache-dir``, else ``$BENCHMARK_CACHE_DIR``, else ``./.cache/benchmark``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(".cache") / "benchmark"
