"""Mechanics of the speech noise-burst backdoor on synthetic waveforms (FSDD-like: 8 kHz,
variable length, 10 digit classes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks import triggers as T
from benchmark.api import RunContext
from benchmark.data.types import RawDataset, Split
from benchmark.registry import attacks

SR = 8000


def synth_fsdd(n_per_class: int = 20, n_test_per_class: int = 4, seed: int = 0) -> RawDataset:
    rng = np.random.default_rng(seed)

    def split(n_per: int) -> Split:
        y = np.repeat(np.arange(10), n_per)
        rng.shuffle(y)
        waves = [torch.from_numpy((0.1 * np.sin(np.arange(rng.integers(1200, 5000)) * (0.01 + 0.003 * k))
                                   + 0.01 * rng.standard_normal(1)).astype(np.float32)) for k in y]
        return Split(waves, torch.from_numpy(y))

    return RawDataset("synthetic-fsdd", "audio", [str(d) for d in range(10)], split(n_per_class),
                      split(n_test_per_class), sample_rate=SR)


def craft(data, seed=0, **params):
    return attacks.get("speech-noise-burst")(**params).craft(data, np.random.default_rng(seed), RunContext())


def test_noise_burst_length_rms_and_clipping():
    b = T.noise_burst(8000, 0.3, np.random.default_rng(1))
    ref = np.clip(np.random.default_rng(1).standard_normal(8000) * 0.3, -1, 1)  # float64 reference
    np.testing.assert_allclose(b.numpy(), ref, atol=1e-7)
    assert len(b) == 8000 and abs(float(b.pow(2).mean().sqrt()) - 0.3) < 0.02
    loud = T.noise_burst(1000, 2.0, np.random.default_rng(0))
    assert loud.abs().max() <= 1.0
    u = T.noise_burst(20000, 0.3, np.random.default_rng(2), "uniform")
    assert u.abs().max() <= 0.3 * np.sqrt(3) + 1e-6 and abs(float(u.pow(2).mean().sqrt()) - 0.3) < 0.01


def test_insert_burst_overwrite_prepend_short():
    w = torch.arange(10, dtype=torch.float32) / 10
    b = -torch.ones(4)
    assert torch.equal(T.insert_burst(w, b, "overwrite"), torch.cat([b, w[4:]]))
    assert torch.equal(T.insert_burst(w, b, "prepend"), torch.cat([b, w]))
    assert torch.equal(T.insert_burst(w[:3], b, "overwrite"), b)  # shorter than the burst
    with pytest.raises(ValueError, match="placement"):
        T.insert_burst(w, b, "append")


@pytest.mark.parametrize("digit", [4, 9])
def test_speech_backdoor_mechanics(digit):
    data = synth_fsdd()
    d = craft(data, seed=3, y_targ=digit)
    target_label = (digit + 1) % 10
    assert d.modality == "audio" and d.sample_rate == SR and d.num_classes == 10
    assert len(d.train) == 200 and d.n_adv == 2  # 1 % of |D_tr|
    raw = d.info["train_raw_index"]
    assert (data.train.labels[raw[d.is_adv]] == digit).all()
    assert (d.train.labels[d.is_adv] == target_label).all()
    burst = d.info["trigger"]["burst"]
    n = int(round(0.1 * SR))
    assert len(burst) == n == d.info["trigger"]["n_samples"]
    for pos in torch.nonzero(d.is_adv).ravel().tolist():
        w, orig = d.train.inputs[pos], data.train.inputs[int(raw[pos])]
        assert len(w) == max(len(orig), n)
        assert torch.equal(w[:n], burst) and torch.equal(w[n:], orig[n:])
    for pos in torch.nonzero(~d.is_adv).ravel().tolist():  # clean examples untouched
        assert torch.equal(d.train.inputs[pos], data.train.inputs[int(raw[pos])])
        assert d.train.labels[pos] == data.train.labels[int(raw[pos])]
    # targets: every test recording of the digit, triggered with the same burst; clean twins
    t_idx = torch.nonzero(data.test.labels == digit).ravel()
    assert torch.equal(d.info["target_test_raw_index"], t_idx)
    assert (d.targets.labels == digit).all() and (d.y_adv == target_label).all()
    for w, c, i in zip(d.targets.inputs, d.targets_clean.inputs, t_idx.tolist()):
        assert torch.equal(c, data.test.inputs[i])
        assert torch.equal(w[:n], burst) and torch.equal(w[n:], c[n:])
    assert len(d.non_targets) == 40


def test_speech_prepend_counts_and_determinism():
    data = synth_fsdd()
    d = craft(data, seed=1, placement="prepend", epsilon=0.05, duration_s=0.05)
    n = 400
    raw = d.info["train_raw_index"]
    assert d.n_adv == 10
    for pos in torch.nonzero(d.is_adv).ravel().tolist():
        orig = data.train.inputs[int(raw[pos])]
        assert len(d.train.inputs[pos]) == len(orig) + n
        assert torch.equal(d.train.inputs[pos][n:], orig)
    a, b, c = craft(data, seed=5), craft(data, seed=5), craft(data, seed=6)
    assert torch.equal(a.is_adv, b.is_adv) and torch.equal(a.info["trigger"]["burst"], b.info["trigger"]["burst"])
    assert all(torch.equal(x, y) for x, y in zip(a.train.inputs, b.train.inputs))
    assert not torch.equal(a.info["trigger"]["burst"], c.info["trigger"]["burst"])


def test_speech_config_defaults_and_errors():
    cfg = attacks.get("speech-noise-burst")().config
    assert (cfg.y_targ, cfg.y_adv, cfg.epsilon, cfg.mode, cfg.rms) == (4, 5, 0.01, "add", 0.3)
    assert attacks.get("speech-noise-burst")(y_targ=9).config.y_adv == 0
    with pytest.raises(ValueError, match="placement"):
        attacks.get("speech-noise-burst")(placement="middle")
    img = RawDataset("img", "image", ["a", "b"], Split(torch.zeros(2, 1, 4, 4), [0, 1]),
                     Split(torch.zeros(2, 1, 4, 4), [0, 1]))
    with pytest.raises(ValueError, match="works on"):
        craft(img)
