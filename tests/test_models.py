"""Paper models (resnet9, resnet32, speech-cnn): parameter counts against hand-derived formulas,
forward shapes, the features()/classifier contract, and architecture details."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import ConfigError
from benchmark.models import build_model
from benchmark.registry import models


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(ci: int, co: int, k: int, bias: bool = True, groups: int = 1) -> int:
    return (ci // groups) * co * k * k + (co if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def resnet9_count(c: int, w: int, out: int) -> int:
    block = lambda ci, co: conv(ci, co, 3) + bn(co)  # noqa: E731
    return (block(c, w) + block(w, 2 * w) + 2 * block(2 * w, 2 * w) + block(2 * w, 4 * w)
            + block(4 * w, 8 * w) + 2 * block(8 * w, 8 * w) + 8 * w * out + out)


def resnet32_count(c: int, w: int, n: int, out: int) -> int:
    total = conv(c, w, 3, bias=False) + bn(w)
    c_in = w
    for c_out in (w, 2 * w, 4 * w):
        for _ in range(n):
            total += conv(c_in, c_out, 3, False) + conv(c_out, c_out, 3, False) + 2 * bn(c_out)
            c_in = c_out
    return total + c_in * out + out  # option A shortcuts have no parameters


def speech_count(c: int, div: int, flat_hw: int, out: int) -> int:
    c1, c2, c3, c4, c5 = (x // div for x in (96, 256, 384, 384, 256))
    return (conv(c, c1, 11) + bn(c1) + conv(c1, c2, 5, groups=2) + bn(c2) + conv(c2, c3, 3) + bn(c3)
            + conv(c3, c4, 3, groups=2) + bn(c4) + conv(c4, c5, 3, groups=2) + bn(c5)
            + c5 * flat_hw * 256 + 256 + bn(256) + 256 * 128 + 128 + bn(128) + 128 * out + out)


def test_registered():
    assert {"resnet9", "resnet32", "speech-cnn"} <= set(models.names())


def test_resnet9_paper_parameter_count():
    m = build_model("resnet9", (3, 32, 32), 1)
    assert n_params(m) == resnet9_count(3, 64, 1) == 6_570_753  # original_code.md Sec. 2.6
    assert n_params(m.body[0][0]) == 1_792 and n_params(m.classifier) == 513


def test_resnet32_standard_parameter_count():
    m = build_model("resnet32", (3, 32, 32), 10)
    assert n_params(m) == resnet32_count(3, 16, 5, 10) == 464_154  # He et al. Table 6: 0.46M
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 31 and all(x.bias is None for x in convs)  # 31 conv + 1 fc = 32 layers
    small = build_model("resnet32", (1, 16, 16), 3, {"width": 4, "blocks_per_stage": 1})
    assert n_params(small) == resnet32_count(1, 4, 1, 3)


def test_speech_cnn_parameter_counts_and_flatten():
    m = build_model("speech-cnn", (1, 64, 64), 10)
    assert m.flat_features == 128 and n_params(m) == speech_count(1, 2, 1, 10)
    # the original input (3 x 512 x 512 spectrogram PNG): 128 x 14 x 14 after the last pool
    orig = build_model("speech-cnn", (3, 512, 512), 10)
    assert orig.flat_features == 25_088 and n_params(orig) == speech_count(3, 2, 14 * 14, 10)
    assert [p.kernel_size for p in orig.modules() if isinstance(p, nn.MaxPool2d)] == [(3, 3)] * 3
    # at 64x64 the maps are 14 -> 6 -> 6 -> 2: the last pool shrinks its window to 2x2 (deviation)
    assert [p.kernel_size for p in m.modules() if isinstance(p, nn.MaxPool2d)] == [(3, 3), (3, 3), (2, 2)]
    full = build_model("speech-cnn", (1, 64, 64), 10, {"width_div": 1})
    assert n_params(full) == speech_count(1, 1, 1, 10)


def test_speech_cnn_layer_order_matches_reference():
    m = build_model("speech-cnn", (1, 64, 64), 10)
    kinds = [type(x).__name__ for x in m.body]
    assert kinds == ["Conv2d", "MaxPool2d", "BatchNorm2d",  # conv1: no ReLU
                     "Conv2d", "MaxPool2d", "BatchNorm2d",  # conv2: no ReLU
                     "Conv2d", "ReLU", "BatchNorm2d",
                     "Conv2d", "ReLU", "BatchNorm2d",
                     "Conv2d", "ReLU", "MaxPool2d", "BatchNorm2d",
                     "Flatten", "Linear", "ReLU", "BatchNorm1d", "Linear", "ReLU", "BatchNorm1d"]
    convs = [x for x in m.body if isinstance(x, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48, 128, 192, 192, 128]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert convs[0].kernel_size == (11, 11) and convs[0].stride == (4, 4) and convs[0].padding == (0, 0)
    assert m.classifier.in_features == 128


@pytest.mark.parametrize("name, shape, out, params", [
    ("resnet9", (3, 32, 32), 1, {"width": 8}),
    ("resnet9", (1, 28, 28), 10, {"width": 8}),
    ("resnet9", (3, 20, 24), 2, {"width": 4}),
    ("resnet32", (3, 32, 32), 10, {"width": 8, "blocks_per_stage": 2}),
    ("resnet32", (1, 28, 28), 1, {"width": 4, "blocks_per_stage": 1}),
    ("speech-cnn", (1, 64, 64), 10, {}),
    ("speech-cnn", (1, 40, 101), 10, {"width_div": 4}),
])
def test_forward_and_features_classifier_contract(name, shape, out, params):
    torch.manual_seed(0)
    m = build_model(name, shape, out, params)
    x = torch.rand(4, *shape)
    m.train()
    y_train = m(x)
    assert y_train.shape == (4, out)
    y_train.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    with torch.no_grad():
        feats = m.features(x)
        assert isinstance(m.classifier, nn.Linear) and m.classifier.out_features == out
        assert feats.shape == (4, m.classifier.in_features)
        assert torch.equal(m.classifier(feats), m(x))
        assert torch.isfinite(m(x)).all()


def test_resnet9_global_max_pool_equals_reference_pool4():
    torch.manual_seed(0)
    m = build_model("resnet9", (3, 32, 32), 1, {"width": 8}).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        pre = m.body[:-2](x)  # everything before AdaptiveMaxPool2d + Flatten
        assert pre.shape[-2:] == (4, 4)
        assert torch.equal(m.features(x), F.max_pool2d(pre, 4).flatten(1))  # reference MaxPool2d(4)
        y = x.clone()
        r = m.body[2]  # Residual(2w): x + res(x)
        h = m.body[1](m.body[0](y))
        assert torch.equal(r(h), h + r.res(h))


def test_resnet32_option_a_shortcut():
    m = build_model("resnet32", (3, 32, 32), 10, {"width": 4, "blocks_per_stage": 2})
    blocks = [b for b in m.body if type(b).__name__ == "BasicBlock"]
    first_stage2 = blocks[2]
    assert first_stage2.stride == 2 and first_stage2.conv1.in_channels == 4
    x = torch.randn(2, 4, 8, 8)
    s = first_stage2.shortcut(x)
    assert s.shape == (2, 8, 4, 4)
    assert torch.equal(s[:, :4], x[:, :, ::2, ::2]) and torch.equal(s[:, 4:], torch.zeros(2, 4, 4, 4))
    assert torch.equal(blocks[1].shortcut(x), x)


def test_speech_cnn_on_log_mel_features():
    from benchmark.data.featurizers import build_featurizer

    f = build_featurizer("log-mel")
    waves = [torch.randn(n) * 0.1 for n in (2000, 5000, 9000)]
    feats = f(waves, sample_rate=8000)
    m = build_model("speech-cnn", f.output_shape(), 10).eval()
    with torch.no_grad():
        assert m(feats).shape == (3, 10)


def test_bad_shapes_and_params():
    with pytest.raises(ValueError, match="at least 8x8"):
        build_model("resnet9", (3, 4, 4), 1)
    with pytest.raises(ValueError, match="C x H x W"):
        build_model("resnet32", (32, 32), 1)
    with pytest.raises(ValueError, match="at least 11x11"):
        build_model("speech-cnn", (1, 8, 64), 10)
    with pytest.raises(ValueError, match="width_div"):
        build_model("speech-cnn", (1, 64, 64), 10, {"width_div": 3})
    with pytest.raises(ConfigError, match="depth"):
        build_model("resnet32", (3, 32, 32), 10, {"depth": 32})
