"""Mechanics of the paper-000 vision attacks (Weber backdoor, joint CIFAR-10 + MNIST-0) and
BadNets, on synthetic RawDatasets (no real data needed).  Expected values are computed
independently in float64 numpy from the raw inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attacks import triggers as T
from benchmark.api import Attack, RunContext
from benchmark.config import ConfigError
from benchmark.data.types import RawDataset, Split
from benchmark.registry import attacks

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def synth_cifar(n_train_per_class: int = 30, n_test_per_class: int = 8, seed: int = 0,
                high: float = 0.6) -> RawDataset:
    """Random 3x32x32 images in [0, high) (so pixel triggers of moderate size do not clip)."""
    g = torch.Generator().manual_seed(seed)

    def split(n_per: int) -> Split:
        y = torch.arange(10).repeat_interleave(n_per)
        y = y[torch.randperm(len(y), generator=g)]
        return Split(torch.rand(len(y), 3, 32, 32, generator=g) * high, y)

    return RawDataset("synthetic-cifar", "image", CIFAR_NAMES, split(n_train_per_class), split(n_test_per_class))


def synth_mnist(n_test: int = 300, seed: int = 1) -> RawDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_test) % 10
    x = torch.rand(n_test, 1, 28, 28, generator=g)
    empty = Split(torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.long))
    return RawDataset("mnist", "image", [str(d) for d in range(10)], empty, Split(x, y))


def f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def craft(name: str, data: RawDataset, seed: int = 0, extra=None, **params):
    context = RunContext(cache_dir=None, device="cpu", extra=extra or {})
    return attacks.get(name)(**params).craft(data, np.random.default_rng(seed), context)


# -- trigger functions ---------------------------------------------------------------------

@pytest.mark.parametrize("kind,pixels", [("one-pixel", [(15, 15)]),
                                         ("four-pixel", [(15, 15), (16, 16), (14, 16), (16, 14)])])
def test_weber_pixel_trigger_positions_amounts_norm(kind, pixels):
    x = torch.rand(5, 3, 32, 32) * 0.3
    delta = 0.7
    pix = T.WEBER_ONE_PIXEL if kind == "one-pixel" else T.WEBER_FOUR_PIXEL
    assert sorted(pix) == sorted(pixels)
    offs = T.WEBER_ONE_PIXEL_OFFSETS if kind == "one-pixel" else T.WEBER_FOUR_PIXEL_OFFSETS
    assert sorted(T.offset_pixels(T.WEBER_CENTER, offs)) == sorted(pixels)
    out = T.add_to_pixels(x, pix, T.pixel_amount(delta, len(pix), 3), "max")
    expect = f64(x).copy()
    per = delta / math.sqrt(3 * len(pixels))
    for r, c in pixels:
        expect[:, :, r, c] += per
    np.testing.assert_allclose(f64(out), expect, atol=1e-6)
    diff = f64(out - x).reshape(5, -1)
    np.testing.assert_allclose(np.linalg.norm(diff, axis=1), delta, rtol=1e-5)
    assert (np.abs(diff) > 0).sum(axis=1).tolist() == [3 * len(pixels)] * 5


def test_pixel_trigger_clips_at_one_only():
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, 15, 15] = 0.9
    x[1, :, 15, 15] = -0.2  # out of range on purpose: the reference clamps only the top
    out = T.add_to_pixels(x, T.WEBER_ONE_PIXEL, 0.5, "max")
    assert torch.allclose(out[0, :, 15, 15], torch.ones(3))
    assert torch.allclose(out[1, :, 15, 15], torch.full((3,), 0.3))
    assert torch.equal(T.add_to_pixels(x, T.WEBER_ONE_PIXEL, 0.5, "none")[0, :, 15, 15], torch.full((3,), 1.4))


def test_blend_pattern_norm_and_no_clipping_by_default():
    rng = np.random.default_rng(3)
    p = T.gaussian_pattern((3, 32, 32), 2.5, rng)
    assert abs(np.linalg.norm(f64(p)) - 2.5) < 1e-5
    # same draw as an independent float64 recomputation
    ref = np.random.default_rng(3).standard_normal((3, 32, 32))
    np.testing.assert_allclose(f64(p), ref / np.linalg.norm(ref) * 2.5, atol=1e-6)
    x = torch.full((2, 3, 32, 32), 0.99)
    out = T.add_pattern(x, p, "none")
    assert out.max() > 1.0 and out.min() < 0.99  # added without clipping
    np.testing.assert_allclose(f64(out - x), np.broadcast_to(f64(p), (2, 3, 32, 32)), atol=1e-6)
    clipped = T.add_pattern(x, p, "range")
    assert clipped.max() <= 1.0 and clipped.min() >= 0.0


# -- Weber backdoor ------------------------------------------------------------------------

@pytest.mark.parametrize("trigger", ["one-pixel", "four-pixel", "blend"])
def test_weber_craft_mechanics(trigger):
    data = synth_cifar()
    d = craft("weber-backdoor", data, seed=4, trigger=trigger, n_adv=12, delta=0.6)
    # binary task airplane (0) vs bird (2), lower id -> 0
    assert d.num_classes == 2 and d.classes == ["airplane", "bird"]
    pair_idx = torch.nonzero((data.train.labels == 0) | (data.train.labels == 2)).ravel()
    assert len(d.train) == len(pair_idx) == 60  # replace mode: |D_tr| unchanged
    assert d.n_adv == 12 and d.info["epsilon_effective"] == pytest.approx(12 / 60)
    raw = d.info["train_raw_index"]
    assert sorted(raw.tolist()) == sorted(pair_idx.tolist())  # each image once (poisons replace)
    adv = d.is_adv
    assert (d.train.labels[adv] == 1).all()  # relabelled to y_adv = bird -> 1
    assert (data.train.labels[raw[adv]] == 0).all()  # poisons are airplanes
    expect_lab = (data.train.labels[raw[~adv]] == 2).long()
    assert torch.equal(d.train.labels[~adv], expect_lab)
    assert torch.equal(d.train.inputs[~adv], data.train.inputs[raw[~adv]])
    diff = f64(d.train.inputs[adv] - data.train.inputs[raw[adv]]).reshape(12, -1)
    np.testing.assert_allclose(np.linalg.norm(diff, axis=1), 0.6, rtol=1e-5)  # 0.6 + 0.6/sqrt(3) < 1: no clipping
    if trigger == "blend":
        pattern = f64(d.info["trigger"]["pattern"]).ravel()
        np.testing.assert_allclose(diff, np.broadcast_to(pattern, diff.shape), atol=1e-6)
    else:
        pixels = {(15, 15)} if trigger == "one-pixel" else {(15, 15), (16, 16), (14, 16), (16, 14)}
        changed = np.abs(diff.reshape(12, 3, 32, 32)) > 0
        assert (changed.sum(axis=(1, 2, 3)) == 3 * len(pixels)).all()
        assert {tuple(p) for p in np.argwhere(changed.any(axis=(0, 1)))} == pixels
        assert changed.all(axis=1).sum() == 12 * len(pixels)  # every channel of each pixel
    # targets: every airplane test image, triggered; clean twins; labels 0, y_adv 1
    t_idx = torch.nonzero(data.test.labels == 0).ravel()
    assert torch.equal(d.info["target_test_raw_index"], t_idx)
    assert torch.equal(d.targets_clean.inputs, data.test.inputs[t_idx])
    assert (d.targets.labels == 0).all() and (d.targets_clean.labels == 0).all() and (d.y_adv == 1).all()
    tdiff = f64(d.targets.inputs - d.targets_clean.inputs).reshape(len(t_idx), -1)
    np.testing.assert_allclose(np.linalg.norm(tdiff, axis=1), 0.6, rtol=1e-5)
    assert len(d.non_targets) == len(d.test) == 16 and set(d.test.labels.tolist()) == {0, 1}


def test_weber_other_pair_and_labels():
    data = synth_cifar()
    d = craft("weber-backdoor", data, y_targ=1, y_adv=5, n_adv=5)  # automobile -> dog
    assert d.classes == ["automobile", "dog"]
    raw = d.info["train_raw_index"]
    assert (data.train.labels[raw[d.is_adv]] == 1).all() and (d.train.labels[d.is_adv] == 1).all()
    assert (d.targets.labels == 0).all() and (d.y_adv == 1).all()


def test_weber_defaults_are_the_paper_setting():
    cfg = attacks.get("weber-backdoor")().config
    assert (cfg.y_targ, cfg.y_adv, cfg.n_adv, cfg.epsilon, cfg.mode) == (0, 2, 150, None, "replace")
    assert cfg.delta == 1.0 and cfg.trigger == "one-pixel"


def test_weber_clip_modes_and_min_perturb_ratio():
    data = synth_cifar()
    # half of the airplanes are saturated at the trigger pixel: their clipped perturbation is 0
    sat = torch.nonzero(data.train.labels == 0).ravel()[:15]
    data.train.inputs[sat, :, 15, 15] = 1.0
    d = craft("weber-backdoor", data, n_adv=10, min_perturb_ratio=0.5)
    raw = d.info["train_raw_index"][d.is_adv]
    assert not set(raw.tolist()) & set(sat.tolist())
    with pytest.raises(ValueError, match="only 15 training images"):
        craft("weber-backdoor", data, n_adv=16, min_perturb_ratio=0.5)
    # blend with clip="range" stays in [0, 1]
    d = craft("weber-backdoor", data, trigger="blend", n_adv=10, delta=5.0, clip="range")
    assert d.train.inputs.max() <= 1 and d.train.inputs.min() >= 0
    d = craft("weber-backdoor", data, trigger="blend", n_adv=10, delta=5.0)
    assert d.targets.inputs.max() > 1 or d.targets.inputs.min() < 0


def test_weber_determinism_and_seed_dependence():
    data = synth_cifar()
    a = craft("weber-backdoor", data, seed=7, trigger="blend", n_adv=10)
    b = craft("weber-backdoor", data, seed=7, trigger="blend", n_adv=10)
    c = craft("weber-backdoor", data, seed=8, trigger="blend", n_adv=10)
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.is_adv, b.is_adv)
    assert torch.equal(a.targets.inputs, b.targets.inputs)
    assert not torch.equal(a.info["poison_raw_index"].sort().values, c.info["poison_raw_index"].sort().values)
    assert not torch.equal(a.info["trigger"]["pattern"], c.info["trigger"]["pattern"])


def test_weber_n_train_subsample_and_errors():
    data = synth_cifar()
    d = craft("weber-backdoor", data, n_adv=5, n_train=40, n_test=6)
    assert len(d.train) == 40 and d.n_adv == 5 and len(d.test) == 6
    raw = d.info["train_raw_index"]
    assert len(set(raw.tolist())) == 40
    with pytest.raises(ValueError, match="exactly one of epsilon"):
        craft("weber-backdoor", data, epsilon=0.05)  # n_adv=150 is still set
    d = craft("weber-backdoor", data, epsilon=0.1, n_adv=None)
    assert d.n_adv == 6
    with pytest.raises(ConfigError, match="unknown config key"):
        attacks.get("weber-backdoor")(detla=1.0)
    with pytest.raises(ValueError, match="trigger must be one of"):
        attacks.get("weber-backdoor")(trigger="two-pixel")


# -- joint CIFAR-10 + MNIST-0 ---------------------------------------------------------------

def test_joint_mnist_mechanics():
    data, mnist = synth_cifar(), synth_mnist()
    zeros = torch.nonzero(mnist.test.labels == 0).ravel()  # 30 zeros
    d = craft("cifar-mnist-joint", data, seed=2, extra={"mnist": mnist}, n_adv=12)
    assert d.num_classes == 2 and d.classes[0].startswith("airplane") and d.classes[1] == "frog"
    adv_ids, tgt_ids = d.info["adv_mnist_index"], d.info["target_mnist_test_index"]
    assert len(adv_ids) == 12 and len(tgt_ids) == len(zeros) - 12
    assert not set(adv_ids.tolist()) & set(tgt_ids.tolist())  # disjoint
    assert set(adv_ids.tolist()) | set(tgt_ids.tolist()) == set(zeros.tolist())
    # training set: every airplane/frog CIFAR image + 12 padded MNIST 0s labelled airplane (0)
    cifar_idx = torch.nonzero((data.train.labels == 0) | (data.train.labels == 6)).ravel()
    assert len(d.train) == len(cifar_idx) + 12 and d.n_adv == 12
    assert (d.train.labels[d.is_adv] == 0).all()
    raw = d.info["train_raw_index"]
    assert sorted(raw[~d.is_adv].tolist()) == sorted(cifar_idx.tolist())
    assert torch.equal(d.train.labels[~d.is_adv], (data.train.labels[raw[~d.is_adv]] == 6).long())
    # padding 2 and three identical channels, with the MNIST pixels in the middle
    advx = d.train.inputs[d.is_adv]
    kinds = d.info["kind"]
    assert torch.equal(kinds == 1, d.is_adv)
    pos = torch.nonzero(d.is_adv).ravel()
    order = {int(p): i for i, p in enumerate(pos)}  # positions of adv examples in train
    src = mnist.test.inputs[adv_ids]
    centre = advx[:, :, 2:30, 2:30]
    assert (advx[:, :, :2].abs().sum() + advx[:, :, 30:].abs().sum() + advx[:, :, :, :2].abs().sum()
            + advx[:, :, :, 30:].abs().sum()) == 0
    assert torch.equal(centre[:, 0], centre[:, 1]) and torch.equal(centre[:, 1], centre[:, 2])
    match = [[bool(torch.equal(c[0], s_[0])) for s_ in src] for c in centre]
    assert all(sum(row) == 1 for row in match)  # every adv image is exactly one drawn MNIST 0
    assert sorted(row.index(True) for row in match) == list(range(12)) and len(order) == 12
    # targets: the other zeros, padded, label airplane (0) = y_adv
    assert torch.equal(d.targets.inputs[:, 1, 2:30, 2:30], mnist.test.inputs[tgt_ids][:, 0])
    assert (d.targets.labels == 0).all() and (d.y_adv == 0).all() and d.targets_clean is None
    assert set(d.test.labels.tolist()) == {0, 1} and len(d.test) == 16


def test_joint_mnist_needs_mnist_and_enough_zeros():
    data = synth_cifar()
    with pytest.raises(ValueError, match="needs dataset 'mnist'"):
        craft("cifar-mnist-joint", data)
    assert attacks.get("cifar-mnist-joint").extra_datasets == ("mnist",)
    with pytest.raises(ValueError, match="need more than n_adv"):
        craft("cifar-mnist-joint", data, extra={"mnist": synth_mnist()}, n_adv=30)
    d = craft("cifar-mnist-joint", data, extra={"mnist": synth_mnist()}, n_adv=10, n_targets=5)
    assert len(d.targets) == 5


def test_joint_mnist_defaults_and_determinism():
    cfg = attacks.get("cifar-mnist-joint")().config
    assert cfg.classes == (0, 6) and cfg.n_adv == 150 and cfg.pad == 2 and cfg.adv_class == 0
    data, mnist = synth_cifar(), synth_mnist()
    a = craft("cifar-mnist-joint", data, seed=5, extra={"mnist": mnist}, n_adv=10)
    b = craft("cifar-mnist-joint", data, seed=5, extra={"mnist": mnist}, n_adv=10)
    c = craft("cifar-mnist-joint", data, seed=6, extra={"mnist": mnist}, n_adv=10)
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.is_adv, b.is_adv)
    assert torch.equal(a.info["adv_mnist_index"], b.info["adv_mnist_index"])
    assert not torch.equal(a.info["adv_mnist_index"], c.info["adv_mnist_index"])


# -- BadNets -------------------------------------------------------------------------------

def test_badnets_patch_all_to_one():
    data = synth_cifar()
    d = craft("badnets", data, seed=1)
    assert d.n_adv == round(0.1 * 300) and len(d.train) == 300
    raw = d.info["train_raw_index"]
    assert (data.train.labels[raw[d.is_adv]] != 0).all()  # every class but y_adv = 0
    assert (d.train.labels[d.is_adv] == 0).all()
    assert sorted(raw.tolist()) == list(range(300))  # replace mode
    x0 = f64(data.train.inputs[raw[d.is_adv]])
    x1 = f64(d.train.inputs[d.is_adv])
    expect = x0.copy()
    expect[:, :, 28:31, 28:31] = 1.0  # 3x3, margin 1, bottom-right
    np.testing.assert_array_equal(x1, expect)
    assert (d.targets.labels != 0).all() and len(d.targets) == 72 and (d.y_adv == 0).all()
    np.testing.assert_array_equal(f64(d.targets.inputs)[:, :, 28:31, 28:31], 1.0)
    d2 = craft("badnets", data, seed=1, y_targ=3, y_adv=7, patch_size=2, corner="top-left", margin=0,
               epsilon=0.02)
    raw2 = d2.info["train_raw_index"]
    assert (data.train.labels[raw2[d2.is_adv]] == 3).all() and d2.n_adv == 6
    assert (d2.train.inputs[d2.is_adv][:, :, :2, :2] == 1).all()


# -- registry ------------------------------------------------------------------------------

def test_all_attacks_registered_with_descriptions():
    names = {"cifar-mnist-joint", "weber-backdoor", "badnets", "spectral-pixel", "semantic",
             "composite", "input-aware", "speech-noise-burst"}
    entries = {e.name: e for e in attacks.entries()}
    assert names <= set(entries)
    for n in names:
        e = entries[n]
        assert e.description and "\n" not in e.description
        assert issubclass(e.obj, Attack)
        e.obj()  # defaults build
