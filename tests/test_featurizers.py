"""Featurizers: registry/config handling, ``image`` normalisation, and ``log-mel`` against a
float64 numpy reference (STFT + HTK mel filterbank written out by hand)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.config import ConfigError
from benchmark.data.featurizers import (ImageFeaturizer, LogMelFeaturizer, build_featurizer)
from benchmark.registry import featurizers


def test_registered_and_unknown_keys_rejected():
    assert {"image", "log-mel"} <= set(featurizers.names())
    assert featurizers.get("image") is ImageFeaturizer and featurizers.get("log-mel") is LogMelFeaturizer
    with pytest.raises(ConfigError, match="n_mel"):
        build_featurizer("log-mel", {"n_mel": 40})
    with pytest.raises(ConfigError, match="mean"):
        build_featurizer("image", {"means": [0.5]})


# -- image ---------------------------------------------------------------------------------
def test_image_identity_by_default():
    x = torch.rand(4, 3, 8, 8)
    f = build_featurizer("image")
    assert f(x) is x
    assert f.output_shape((3, 8, 8)) == (3, 8, 8)
    with pytest.raises(ValueError, match="C x H x W"):
        f.output_shape(None)
    with pytest.raises(ValueError, match="N x C x H x W"):
        f(torch.rand(3, 8, 8))


def test_image_normalisation_matches_float64():
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
    f = build_featurizer("image", {"mean": mean, "std": std})  # lists, as from JSON
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    got = f(x)
    xd = x.double().numpy()
    expected = np.empty_like(xd)
    for c in range(3):
        expected[:, c] = (xd[:, c] - mean[c]) / std[c]
    assert np.abs(got.double().numpy() - expected).max() < 1e-6
    with pytest.raises(ValueError, match="3 mean/std values for 1 channels"):
        f(torch.rand(2, 1, 4, 4))
    with pytest.raises(ConfigError, match="both mean and std"):
        build_featurizer("image", {"mean": mean})
    with pytest.raises(ConfigError, match="> 0"):
        build_featurizer("image", {"mean": [0.5], "std": [0.0]})


# -- log-mel -------------------------------------------------------------------------------
def reference_log_mel(wave: np.ndarray, cfg) -> np.ndarray:
    """float64: pad/crop at the end, reflect-pad n_fft/2, periodic Hann window of win_length
    centred in n_fft, |rfft|^2, HTK mel triangles, log(. + offset)."""
    L = (cfg.n_frames - 1) * cfg.hop_length
    x = np.zeros(L)
    n = min(len(wave), L)
    x[:n] = wave[:n]
    xp = np.pad(x, cfg.n_fft // 2, mode="reflect")
    win = np.zeros(cfg.n_fft)
    left = (cfg.n_fft - cfg.win_length) // 2
    k = np.arange(cfg.win_length)
    win[left:left + cfg.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * k / cfg.win_length)
    frames = np.stack([xp[t * cfg.hop_length: t * cfg.hop_length + cfg.n_fft] * win
                       for t in range(cfg.n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # T x F

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    mels = np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(f_max), cfg.n_mels + 2)
    pts = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    fb = np.zeros((len(freqs), cfg.n_mels))
    for i in range(cfg.n_mels):
        down = (freqs - pts[i]) / (pts[i + 1] - pts[i])
        up = (pts[i + 2] - freqs) / (pts[i + 2] - pts[i + 1])
        fb[:, i] = np.maximum(0.0, np.minimum(down, up))
    return np.log(power @ fb + cfg.log_offset).T  # n_mels x T


def speechlike(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8000
    w = sum(rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(100, 3500) * t) for _ in range(4))
    return (w + 0.01 * rng.standard_normal(n)).astype(np.float32)


def test_log_mel_defaults_shape_and_reference():
    f = build_featurizer("log-mel")
    cfg = f.config
    assert f.output_shape() == (1, 64, 64) and cfg.num_samples == 63 * 128
    waves = [torch.from_numpy(speechlike(n, s)) for s, n in enumerate([1200, 8064, 20000])]
    out = f(waves, sample_rate=8000)
    assert out.shape == (3, 1, 64, 64) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    for i, w in enumerate(waves):
        ref = reference_log_mel(w.double().numpy(), cfg)
        assert np.abs(out[i, 0].double().numpy() - ref).max() < 1e-3, i
    # padding: silence after the end of the short clip is log(offset)
    assert torch.allclose(out[0, 0, :, -5:], torch.full((64, 5), float(np.log(cfg.log_offset))), atol=1e-4)


def test_log_mel_crops_at_the_end_and_keeps_the_start():
    f = build_featurizer("log-mel")
    long = torch.from_numpy(speechlike(20000, 7))
    a = f([long], sample_rate=8000)
    b = f([long[: f.config.num_samples]], sample_rate=8000)
    assert torch.equal(a, b)
    as_matrix = f(torch.stack([long[:9000], long[1000:10000]]), sample_rate=8000)
    assert torch.equal(as_matrix[0], f([long[:9000]], sample_rate=8000)[0])


def test_log_mel_custom_config_and_resampling():
    f = build_featurizer("log-mel", {"n_mels": 32, "n_frames": 20, "hop_length": 80})
    assert f.output_shape() == (1, 32, 20)
    w16 = torch.from_numpy(speechlike(6000, 3))
    out = f([w16], sample_rate=16000)
    import torchaudio.functional as AF

    expected = f([AF.resample(w16, 16000, 8000)], sample_rate=8000)
    assert out.shape == (1, 1, 32, 20) and torch.allclose(out, expected)
    ref = reference_log_mel(AF.resample(w16, 16000, 8000).double().numpy(), f.config)
    assert np.abs(out[0, 0].double().numpy() - ref).max() < 1e-3


def test_log_mel_errors_and_empty_batch():
    f = build_featurizer("log-mel")
    with pytest.raises(ValueError, match="sample rate"):
        f([torch.zeros(100)])
    with pytest.raises(ValueError, match="1-D"):
        f([torch.zeros(2, 100)], sample_rate=8000)
    with pytest.raises(ValueError, match="list of 1-D waveforms"):
        f(torch.zeros(100), sample_rate=8000)
    assert f([], sample_rate=8000).shape == (0, 1, 64, 64)
    with pytest.raises(ConfigError, match="win_length"):
        build_featurizer("log-mel", {"win_length": 300})
