"""Model zoo.  Every model is built as ``builder(input_shape, num_outputs, **params)`` and
exposes ``features(x)`` (penultimate representation, the input of the final linear layer) and
``classifier`` (that final ``nn.Linear``), which representer point, k-NN baselines and
representation-based defenses use."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from benchmark.config import check_call_params, unwrap
from benchmark.registry import models

# in-tree model modules register on import
from benchmark.models import hf_text, mlp, resnet9, resnet32, small_cnn, speech_cnn  # noqa: F401,E402


def check_model_params(name: str, params: Mapping[str, Any] | None = None) -> None:
    """An unknown model or parameter is an error (no model is built)."""
    check_call_params(models.get(name), params, ("input_shape", "num_outputs"), f"model {name!r}")


def build_model(name: str, input_shape: tuple[int, ...], num_outputs: int,
                params: Mapping[str, Any] | None = None) -> nn.Module:
    """Build registered model ``name``; an unknown parameter is an error."""
    check_model_params(name, params)
    return models.get(name)(input_shape=tuple(input_shape), num_outputs=num_outputs, **dict(unwrap(params or {})))
