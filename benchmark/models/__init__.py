"""Model zoo.  Every model is built as ``builder(input_shape, num_outputs, **params)`` and
exposes ``features(x)`` (penultimate representation, the input of the final linear layer) and
``classifier`` (that final ``nn.Linear``), which representer point, k-NN baselines and
representation-based defenses use."""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import nn

from benchmark.config import ConfigError, unwrap
from benchmark.registry import models

# in-tree model modules register on import
from benchmark.models import resnet9, resnet32, small, speech_cnn  # noqa: F401,E402


def build_model(name: str, input_shape: tuple[int, ...], num_outputs: int,
                params: Mapping[str, Any] | None = None) -> nn.Module:
    """Build registered model ``name``; an unknown parameter is an error."""
    builder = models.get(name)
    params = dict(unwrap(params or {}))
    sig = inspect.signature(builder)
    valid = [p for p in sig.parameters if p not in ("input_shape", "num_outputs")]
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for model {name!r}; valid: {valid}")
    return builder(input_shape=tuple(input_shape), num_outputs=num_outputs, **params)
