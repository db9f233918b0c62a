"""``speech-cnn``: the AlexNet-like speech CNN of the reference code (internal
``_speech_model.py``, original_code.md Sec. 2.6), at half width by default (``USE_FULL_SIZE=False``
-> ``width_div=2``; ``width_div=1`` is the full-width network)::

    conv1 C -> 96/d, k11 s4          -> MaxPool(3, 2) -> BN        (no ReLU, reference-code)
    conv2 -> 256/d, k5 p2 groups 2   -> MaxPool(3, 2) -> BN        (no ReLU, reference-code)
    conv3 -> 384/d, k3 p1            -> ReLU -> BN
    conv4 -> 384/d, k3 p1 groups 2   -> ReLU -> BN
    conv5 -> 256/d, k3 p1 groups 2   -> ReLU -> MaxPool(3, 2) -> BN
    flatten -> FC 256 -> ReLU -> BN1d -> FC 128 -> ReLU -> BN1d (= features, 128 values)
    -> Linear(128, num_outputs)

Input: ``1 x 64 x 64`` log-mel spectrograms from the ``log-mel`` featurizer (default), or any
``C x H x W`` with ``H, W >= 11``.

Deviation (ours): the original fed ``3 x 512 x 512`` spectrogram PNGs, where the flatten size is
``128 x 14 x 14 = 25,088`` (half width).  Here the flatten size is computed from ``input_shape``,
and a max-pool whose input is smaller than its 3x3 window shrinks the window to the input size
(stride 2 kept), so small inputs work: at ``1 x 64 x 64`` the maps are 14 -> 6 -> 6 -> 2 -> 1 and
the flatten size is 128.  At 512x512 every pool keeps its 3x3 window, i.e. the original network.
Dropout is disabled, as in the reference code.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmark.registry import models

#: Full-width conv channels (AlexNet / Pannous ``numbers_deploy.prototxt``; reference-code).
FULL_CHANNELS = (96, 256, 384, 384, 256)
#: Hidden FC widths (reference-code; not divided by width_div).
FC_WIDTHS = (256, 128)
GROUPS = 2  # reference-code (AlexNet's two-GPU grouping)


def _conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pool(h: int, w: int) -> tuple[nn.MaxPool2d, int, int]:
    """MaxPool(3, 2), with the window shrunk to the map where the map is smaller than 3."""
    kh, kw = min(3, h), min(3, w)
    return nn.MaxPool2d((kh, kw), stride=2), _conv_out(h, kh, 2), _conv_out(w, kw, 2)


class SpeechCNN(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], num_outputs: int, width_div: int = 2) -> None:
        super().__init__()
        c_in, h, w = input_shape
        c1, c2, c3, c4, c5 = (c // width_div for c in FULL_CHANNELS)
        h, w = _conv_out(h, 11, 4), _conv_out(w, 11, 4)
        pool1, h, w = _pool(h, w)
        conv1 = [nn.Conv2d(c_in, c1, 11, stride=4), pool1, nn.BatchNorm2d(c1)]
        h, w = _conv_out(h, 5, 1, 2), _conv_out(w, 5, 1, 2)
        pool2, h, w = _pool(h, w)
        conv2 = [nn.Conv2d(c1, c2, 5, padding=2, groups=GROUPS), pool2, nn.BatchNorm2d(c2)]
        conv3 = [nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(c3)]
        conv4 = [nn.Conv2d(c3, c4, 3, padding=1, groups=GROUPS), nn.ReLU(), nn.BatchNorm2d(c4)]
        pool5, h, w = _pool(h, w)
        conv5 = [nn.Conv2d(c4, c5, 3, padding=1, groups=GROUPS), nn.ReLU(), pool5, nn.BatchNorm2d(c5)]
        self.flat_features = c5 * h * w
        f1, f2 = FC_WIDTHS
        self.body = nn.Sequential(
            *conv1, *conv2, *conv3, *conv4, *conv5, nn.Flatten(),
            nn.Linear(self.flat_features, f1), nn.ReLU(), nn.BatchNorm1d(f1),
            nn.Linear(f1, f2), nn.ReLU(), nn.BatchNorm1d(f2),
        )
        self.classifier = nn.Linear(f2, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@models.register("speech-cnn", "Half-width AlexNet-like speech CNN of the reference code (log-mel 1x64x64 input)")
def speech_cnn(input_shape: tuple[int, ...], num_outputs: int, width_div: int = 2) -> SpeechCNN:
    if len(input_shape) != 3:
        raise ValueError(f"speech-cnn expects C x H x W inputs, got shape {input_shape}")
    if min(input_shape[1:]) < 11:
        raise ValueError(f"speech-cnn's first layer is an 11x11 convolution; inputs must be at "
                         f"least 11x11, got {input_shape[1]}x{input_shape[2]}")
    if width_div < 1 or any(c % width_div or (c // width_div) % GROUPS for c in FULL_CHANNELS):
        raise ValueError(f"speech-cnn width_div must divide {FULL_CHANNELS} into even channel "
                         f"counts (e.g. 1, 2, 4, 8), got {width_div}")
    return SpeechCNN(tuple(int(v) for v in input_shape), num_outputs, width_div)  # type: ignore[arg-type]
