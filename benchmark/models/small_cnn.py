"""``small-cnn``: two conv-BN-ReLU blocks and a linear head (digits, tests of conv/BN paths)."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.registry import models


class SmallCNN(nn.Module):
    """Conv-BN-ReLU x 2 (+ max-pool) -> Linear; for 8x8 digits and tests of conv/BN paths."""

    def __init__(self, in_channels: int, side: int, width: int, num_outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@models.register("small-cnn", "Two conv-BN-ReLU blocks and a linear head (digits, tests)")
def small_cnn(input_shape: tuple[int, ...], num_outputs: int, width: int = 8) -> SmallCNN:
    if len(input_shape) != 3:
        raise ValueError(f"small-cnn expects C x H x W inputs, got shape {input_shape}")
    return SmallCNN(input_shape[0], input_shape[1], width, num_outputs)
