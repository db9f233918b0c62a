"""``resnet9``: David Page's "How to train your ResNet" ResNet9, as used by the reference code
(original_code.md Sec. 2.6, ``datasets/_cifar10_resnet.py``).

``conv_block(c_in, c_out) = Conv3x3(pad 1, bias) -> BN -> ReLU (-> MaxPool2)``::

    prep    conv_block(C, w)
    layer1  conv_block(w, 2w) + pool, then x + [conv_block(2w, 2w), conv_block(2w, 2w)](x)
    layer2  conv_block(2w, 4w) + pool
    layer3  conv_block(4w, 8w) + pool, then x + [conv_block(8w, 8w), conv_block(8w, 8w)](x)
    global max pool -> flatten (= features, 8w values) -> Linear(8w, num_outputs)

Width ``w = 64`` (reference-code) gives 6,570,753 parameters with one output on 3x32x32.
The reference pools with ``MaxPool2d(4)`` on CIFAR (4x4 maps) and ``MaxPool2d(3)`` on 28x28
MNIST (3x3 maps), i.e. a global max pool in both cases; ``AdaptiveMaxPool2d(1)`` is that same
operation for any input size.  No output scaling, no dropout (reference-code).
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.registry import models


def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=True),
                               nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res = nn.Sequential(conv_block(channels, channels), conv_block(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res(x)


class ResNet9(nn.Module):
    def __init__(self, in_channels: int, num_outputs: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv_block(in_channels, w),
            conv_block(w, 2 * w, pool=True), Residual(2 * w),
            conv_block(2 * w, 4 * w, pool=True),
            conv_block(4 * w, 8 * w, pool=True), Residual(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(8 * w, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@models.register("resnet9", "Page's ResNet9 (reference code's CIFAR model; width 64 = 6.57M params)")
def resnet9(input_shape: tuple[int, ...], num_outputs: int, width: int = 64) -> ResNet9:
    if len(input_shape) != 3:
        raise ValueError(f"resnet9 expects C x H x W inputs, got shape {input_shape}")
    if min(input_shape[1:]) < 8:
        raise ValueError(f"resnet9 halves the spatial size three times; inputs must be at least "
                         f"8x8, got {input_shape[1]}x{input_shape[2]}")
    if width < 1:
        raise ValueError(f"resnet9 width must be >= 1, got {width}")
    return ResNet9(input_shape[0], num_outputs, width)
