"""``resnet32``: the CIFAR ResNet of He et al. (2016, "Deep Residual Learning", Sec. 4.2),
depth ``6n + 2`` with ``n = blocks_per_stage`` (n = 5 -> ResNet-32, the model of paper 001's
vision experiments).

* first layer: Conv3x3(C -> w) -> BN -> ReLU;
* three stages of ``n`` basic blocks (two Conv3x3-BN, ReLU after the sum) with ``{w, 2w, 4w}``
  filters (He et al.: {16, 32, 64}); the first block of stages 2 and 3 subsamples with stride 2;
* **option A shortcuts** (He et al. Sec. 4.2: "we use identity shortcuts in all cases"): where the
  shape changes, the shortcut is the identity subsampled by 2 with zero channels appended
  (parameter-free), as in the authors' Torch code;
* global average pool -> flatten (= features, 4w values) -> Linear(4w, num_outputs).

Convolutions have no bias (BN follows) and He initialisation (He et al. 2015, fan-in, the
"weight initialization in [13]" of Sec. 4.2); BN and Linear keep PyTorch's defaults.  The
standard config (w=16, n=5) has 464,154 parameters with 10 outputs (~0.46M, He et al. Table 6).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import models


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.extra_channels = c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Option A: identity, subsampled by ``stride``, zero channels appended."""
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, in_channels: int, num_outputs: int, width: int = 16,
                 blocks_per_stage: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU()]
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(c_in, c_out, stride))
                c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@models.register("resnet32", "CIFAR ResNet-32 of He et al. (option A shortcuts, 0.46M params; width/depth configurable)")
def resnet32(input_shape: tuple[int, ...], num_outputs: int, width: int = 16,
             blocks_per_stage: int = 5) -> ResNetCifar:
    if len(input_shape) != 3:
        raise ValueError(f"resnet32 expects C x H x W inputs, got shape {input_shape}")
    if width < 1 or blocks_per_stage < 1:
        raise ValueError(f"resnet32 needs width >= 1 and blocks_per_stage >= 1, got "
                         f"{width}, {blocks_per_stage}")
    return ResNetCifar(input_shape[0], num_outputs, width, blocks_per_stage)
