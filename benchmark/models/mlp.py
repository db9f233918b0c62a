"""``mlp``: a multi-layer perceptron for the embedded digits data and tests."""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmark.registry import models


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] x depth -> Linear."""

    def __init__(self, in_features: int, hidden: int, depth: int, num_outputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@models.register("mlp", "Multi-layer perceptron (width/depth configurable) for small inputs")
def mlp(input_shape: tuple[int, ...], num_outputs: int, hidden: int = 32, depth: int = 1) -> MLP:
    return MLP(math.prod(input_shape), hidden, depth, num_outputs)
