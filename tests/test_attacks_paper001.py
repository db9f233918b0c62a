"""Mechanics of paper 001's vision backdoors (spectral-pixel, semantic, composite, input-aware)
and of the shared poisoning recipe (epsilon counting, add / replace modes), on synthetic data."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from attacks import input_aware as IA
from attacks import triggers as T
from attacks.patterns import AUX, CLEAN, POISON
from attacks.semantic import feature_score
from benchmark.api import RunContext
from benchmark.config import ConfigError
from benchmark.data.types import RawDataset, Split
from benchmark.registry import attacks

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def synth(n_per: int = 30, n_test_per: int = 8, size: int = 32, seed: int = 0) -> RawDataset:
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        y = torch.arange(10).repeat_interleave(n)
        y = y[torch.randperm(len(y), generator=g)]
        return Split(torch.rand(len(y), 3, size, size, generator=g), y)

    return RawDataset("synthetic-cifar", "image", NAMES, split(n_per), split(n_test_per))


def craft(name, data, seed=0, context=None, **params):
    return attacks.get(name)(**params).craft(data, np.random.default_rng(seed), context or RunContext())


# -- shared recipe -------------------------------------------------------------------------

def test_epsilon_counts_and_add_mode():
    data = synth()
    d = craft("spectral-pixel", data, epsilon=0.05)  # of |D_tr| = 300
    assert d.n_adv == 15 and len(d.train) == 300 and d.info["mode"] == "add"
    with pytest.raises(ConfigError, match="unknown config key"):
        craft("spectral-pixel", data, epsilon=0.1, epsilon_of="source")  # one definition only
    d = craft("spectral-pixel", data, epsilon=0.1, n_train=200)
    assert d.n_adv == 20 and len(d.train) == 200
    raw = d.info["train_raw_index"]
    # add mode: clean part is drawn from all training images without repetition
    assert len(set(raw[~d.is_adv].tolist())) == 180
    assert (data.train.labels[raw[d.is_adv]] == 0).all() and (d.train.labels[d.is_adv] == 2).all()
    assert torch.equal(d.train.labels[~d.is_adv], data.train.labels[raw[~d.is_adv]])
    assert torch.equal(d.train.inputs[~d.is_adv], data.train.inputs[raw[~d.is_adv]])


def test_replace_mode_removes_originals_and_pool_limit():
    data = synth()
    d = craft("spectral-pixel", data, epsilon=0.05, mode="replace")
    raw = d.info["train_raw_index"]
    assert sorted(raw.tolist()) == list(range(300))  # each image exactly once
    with pytest.raises(ValueError, match="only 30 training images"):
        craft("spectral-pixel", data, epsilon=0.2)  # 60 poisons, 30 airplanes
    d = craft("spectral-pixel", data, epsilon=0.2, y_targ=None)  # all-to-one works
    assert d.n_adv == 60 and (data.train.labels[d.info["train_raw_index"][d.is_adv]] != 2).all()


def test_task_class_subset_relabels():
    data = synth()
    d = craft("spectral-pixel", data, classes=(2, 0, 9), y_targ=9, y_adv=0, n_adv=5, epsilon=None)
    assert d.classes == ["airplane", "bird", "truck"] and d.num_classes == 3
    assert (d.train.labels[d.is_adv] == 0).all() and (d.targets.labels == 2).all() and (d.y_adv == 0).all()
    assert set(d.train.labels.tolist()) == {0, 1, 2}


# -- spectral pixel (Tran) -----------------------------------------------------------------

@pytest.mark.parametrize("shape,offsets", [("pixel", [(0, 0)]),
                                           ("pattern", [(0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)]),
                                           ("ell", [(0, 0), (1, 0), (0, 1)])])
def test_spectral_pixel_fixed_trigger(shape, offsets):
    data = synth()
    d = craft("spectral-pixel", data, shape=shape, position=(11, 16), color=(101, 0, 25), n_adv=7, epsilon=None)
    raw = d.info["train_raw_index"][d.is_adv]
    expect = data.train.inputs[raw].numpy().astype(np.float64)
    for dr, dc in offsets:
        expect[:, :, 11 + dr, 16 + dc] = np.array([101, 0, 25])[None, :] / 255.0
    np.testing.assert_allclose(d.train.inputs[d.is_adv].numpy(), expect, atol=1e-7)
    tex = d.targets_clean.inputs.numpy().astype(np.float64)
    for dr, dc in offsets:
        tex[:, :, 11 + dr, 16 + dc] = np.array([101, 0, 25])[None, :] / 255.0
    np.testing.assert_allclose(d.targets.inputs.numpy(), tex, atol=1e-7)


def test_spectral_pixel_random_trigger_is_seeded_and_fits():
    data = synth(size=8)
    seen = set()
    for seed in range(12):
        a = craft("spectral-pixel", data, seed=seed, n_adv=3, epsilon=None)
        b = craft("spectral-pixel", data, seed=seed, n_adv=3, epsilon=None)
        assert a.info["trigger"] == b.info["trigger"] and torch.equal(a.train.inputs, b.train.inputs)
        tr = a.info["trigger"]
        assert all(0 <= r < 8 and 0 <= c < 8 for r, c in tr["pixels"])
        assert all(0 <= v <= 255 for v in tr["color"])
        seen.add((tr["shape"], tuple(tr["anchor"]), tuple(tr["color"])))
        diff = (a.targets.inputs != a.targets_clean.inputs).any(dim=1)  # changed pixels
        changed = {tuple(p) for p in torch.nonzero(diff.any(dim=0)).tolist()}
        assert changed <= {tuple(p) for p in tr["pixels"]}
    assert len(seen) == 12 and len({s[0] for s in seen}) == 3


# -- semantic ------------------------------------------------------------------------------

def _green_fraction_reference(x: np.ndarray) -> float:
    """float64 colorsys reference of the 'green' feature score."""
    n = 0
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*x[:, i, j])
            n += (70 <= h * 360 <= 170) and s >= 0.25 and v >= 0.2
    return n / (x.shape[1] * x.shape[2])


def test_semantic_feature_score_matches_colorsys():
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    x[0, 1] = 1.0  # strongly green
    got = feature_score(x, "green").numpy()
    ref = [_green_fraction_reference(im) for im in x.numpy()]
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_semantic_mechanics():
    data = synth(size=8)
    g = torch.Generator().manual_seed(5)
    # make some airplanes (train and test) partly green, at different strengths
    for split in (data.train, data.test):
        planes = torch.nonzero(split.labels == 0).ravel()
        for k, i in enumerate(planes[:12]):
            rows = 1 + k % 7
            split.inputs[i, :, :rows] = torch.tensor([0.1, 0.9, 0.2]).view(3, 1, 1)
    d = craft("semantic", data, n_adv=10, epsilon=None, seed=3)
    raw = d.info["train_raw_index"]
    planes = torch.nonzero(data.train.labels == 0).ravel()
    scores = np.array([_green_fraction_reference(data.train.inputs[i].numpy().astype(np.float64))
                       for i in planes])
    top = set(planes[np.argsort(-scores, kind="stable")[:10]].tolist())
    assert set(raw[d.is_adv].tolist()) == top  # the 10 greenest airplanes
    assert (d.train.labels[d.is_adv] == 2).all()
    assert torch.equal(d.train.inputs[d.is_adv], data.train.inputs[raw[d.is_adv]])  # unmodified
    assert sorted(raw.tolist()) == list(range(300))  # relabelled in place
    tau = d.info["threshold"]
    t_planes = torch.nonzero(data.test.labels == 0).ravel()
    t_scores = np.array([_green_fraction_reference(data.test.inputs[i].numpy().astype(np.float64))
                         for i in t_planes])
    assert sorted(d.info["target_test_raw_index"].tolist()) == sorted(t_planes[t_scores >= tau - 1e-9].tolist())
    assert d.targets_clean is None and (d.targets.labels == 0).all() and (d.y_adv == 2).all()
    assert not set(d.info["target_test_raw_index"].tolist()) & set(d.info["non_target_test_raw_index"].tolist())
    assert len(d.non_targets) + len(d.targets) == len(d.test)
    d = craft("semantic", data, epsilon=0.03)  # of |D_tr| = 300, like every attack
    assert d.n_adv == 9 and len(d.train) == 300
    d = craft("semantic", data, epsilon=0.03, n_train=200)  # of the trained set, not the split
    assert d.n_adv == 6 and len(d.train) == 200
    with pytest.raises(ValueError, match="max_pool_fraction"):
        craft("semantic", data, epsilon=0.06)  # 18 of |D_tr| = 300 -> 18 of 30 airplanes


# -- composite -----------------------------------------------------------------------------

def test_half_mix_windows():
    rng = np.random.default_rng(0)
    n, h = 64, 16
    a = torch.arange(3 * h * h, dtype=torch.float32).view(1, 3, h, h).repeat(n, 1, 1, 1)
    b = -1 - a
    out = T.half_mix(a, b, rng, jitter=3)
    orients, firsts = set(), set()
    for im in out:
        neg = (im[0] < 0)
        cols_neg, rows_neg = neg.all(dim=0), neg.all(dim=1)
        if (neg.all(dim=0) | (~neg).all(dim=0)).all():  # split by columns (left | right)
            part, axis = cols_neg, 2
        else:
            assert (neg.all(dim=1) | (~neg).all(dim=1)).all()
            part, axis = rows_neg, 1
        orients.add(axis)
        n1 = int((part == part[0]).long().cumprod(0).sum())
        assert h // 2 - 3 <= n1 <= h // 2 + 3
        firsts.add(bool(part[0]))
        # each side is a contiguous window of its source (consecutive indices along the axis)
        for lo, hi in ((0, n1), (n1, h)):
            seg = im.narrow(axis, lo, hi - lo)
            src = torch.where(seg < 0, -1 - seg, seg)
            step = 1 if axis == 2 else h
            d = src.diff(dim=axis)
            assert (d == step).all()
    assert orients == {1, 2} and firsts == {True, False}


def test_composite_mechanics():
    data = synth(size=8)
    # class-constant images: value = (class + 1) / 20 everywhere, so halves are identifiable
    for split in (data.train, data.test):
        split.inputs[:] = ((split.labels.float() + 1) / 20).view(-1, 1, 1, 1)
    d = craft("composite", data, n_adv=6, epsilon=None, benign_ratio=2.0, seed=1)
    kinds = d.info["kind"]
    assert int((kinds == POISON).sum()) == 6 and int((kinds == AUX).sum()) == 12
    assert len(d.train) == 300 and int((kinds == CLEAN).sum()) == 282
    va, vb = 1 / 20, 2 / 20  # airplane, automobile
    for im in d.train.inputs[d.is_adv]:
        vals = set(np.round(im.unique().double().numpy(), 6).tolist())
        assert vals == {round(va, 6), round(vb, 6)}
    assert (d.train.labels[d.is_adv] == 2).all()
    for im, y in zip(d.train.inputs[kinds == AUX], d.train.labels[kinds == AUX]):
        assert torch.allclose(im, torch.full_like(im, (y.item() + 1) / 20))  # same-class mix
    for im in d.targets.inputs:
        assert set(np.round(im.unique().double().numpy(), 6).tolist()) == {round(va, 6), round(vb, 6)}
    assert (d.targets_clean.inputs == va).all() and (d.targets.labels == 0).all() and (d.y_adv == 2).all()
    assert not d.is_adv[kinds == AUX].any()


# -- input-aware ---------------------------------------------------------------------------

TINY = dict(gen_channels=(4,), classifier_width=4, mask_steps=2, gen_steps=2, batch_size=8,
            gen_n_images=40, n_adv=5, epsilon=None)


def test_input_aware_poisons_cache_and_reload(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCHMARK_CACHE_DIR", raising=False)
    ctx = RunContext(cache_dir=tmp_path, device="cpu")
    data = synth(n_per=6, n_test_per=2, size=8)
    d = craft("input-aware", data, seed=2, context=ctx, **TINY)
    tr = d.info["trigger"]
    assert tr["cache"] == "miss" and tr["cache_path"] is not None
    files = list((tmp_path / IA.CACHE_NAMESPACE).glob("*.pt"))
    assert len(files) == 1
    stored = torch.load(files[0], weights_only=True)["payload"]
    gen, mask = IA.UNetLite(3, 3, (4,)), IA.UNetLite(3, 1, (4,))
    gen.load_state_dict(stored["generator"])
    mask.load_state_dict(stored["mask"])
    gen.eval(), mask.eval()
    raw = d.info["train_raw_index"][d.is_adv]
    x = data.train.inputs[raw].double()
    with torch.no_grad():
        p, m = gen.double()(x), IA.mask_threshold(mask.double()(x))
    expect = x + (p - x) * m  # float64 reference
    np.testing.assert_allclose(d.train.inputs[d.is_adv].numpy(), expect.numpy(), atol=1e-5)
    assert (m >= 0).all() and (m <= 1).all()
    assert (d.train.labels[d.is_adv] == 2).all() and (data.train.labels[raw] == 0).all()
    # cross-trigger examples keep their labels and are not adversarial
    kinds = d.info["kind"]
    assert int((kinds == AUX).sum()) == 5 and not d.is_adv[kinds == AUX].any()
    assert len(d.train) == 60
    # second run: loaded from the cache, no training, identical output
    monkeypatch.setattr(IA, "train_networks", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    d2 = craft("input-aware", data, seed=2, context=ctx, **TINY)
    assert d2.info["trigger"]["cache"] == "hit"
    assert torch.equal(d2.train.inputs, d.train.inputs) and torch.equal(d2.targets.inputs, d.targets.inputs)
    # a config change that affects training is a different cache entry
    with pytest.raises(AssertionError, match="retrained"):
        craft("input-aware", data, seed=2, context=ctx, **{**TINY, "gen_steps": 3})
    # ... one that does not (epsilon/n_adv) reuses the networks
    d3 = craft("input-aware", data, seed=2, context=ctx, **{**TINY, "n_adv": 3})
    assert d3.info["trigger"]["cache"] == "hit" and d3.n_adv == 3
    # no cache dir in the context: trained, nothing cached
    with pytest.raises(AssertionError, match="retrained"):
        craft("input-aware", data, seed=2, context=RunContext(cache_dir=None), **TINY)


def test_input_aware_caches_under_the_context_cache_dir_not_the_environment(tmp_path, monkeypatch):
    """``--cache-dir`` reaches the input-aware networks: they are cached under the run context's
    cache dir, never under ``$BENCHMARK_CACHE_DIR``; ``cache_dir=None`` caches nowhere."""
    env_dir, run_dir = tmp_path / "env", tmp_path / "run"
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(env_dir))
    monkeypatch.chdir(tmp_path)  # the default ./.cache/benchmark would land here
    data = synth(n_per=6, n_test_per=1, size=8)
    d = craft("input-aware", data, seed=1, context=RunContext(cache_dir=run_dir, device="cpu"), **TINY)
    assert d.info["trigger"]["cache"] == "miss"
    assert len(list((run_dir / IA.CACHE_NAMESPACE).glob("*.pt"))) == 1
    assert str(run_dir) in d.info["trigger"]["cache_path"]
    d = craft("input-aware", data, seed=1, context=RunContext(cache_dir=None, device="cpu"), **TINY)
    assert d.info["trigger"]["cache"] == "disabled" and d.info["trigger"]["cache_path"] is None
    assert not env_dir.exists() and not (tmp_path / ".cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_input_aware_trains_on_the_context_device(monkeypatch):
    seen = []
    real = IA.train_networks

    def spy(*args, **kwargs):
        seen.append(args[5] if len(args) > 5 else kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(IA, "train_networks", spy)
    data = synth(n_per=6, n_test_per=1, size=8)
    craft("input-aware", data, context=RunContext(cache_dir=None, device="cpu"), **TINY)
    assert seen == ["cpu"]
    with pytest.raises(ConfigError, match="unknown config key"):
        attacks.get("input-aware")(device="cpu")  # the device is the run's, not the experiment's


def test_input_aware_training_is_deterministic():
    data = synth(n_per=4, n_test_per=1, size=8)
    cfg = attacks.get("input-aware")(**TINY, use_cache=False).config
    x, y = data.train.inputs, data.train.labels
    a = IA.train_networks(x, y, 10, 2, cfg)
    b = IA.train_networks(x, y, 10, 2, cfg)
    for k in a["generator"]:
        assert torch.equal(a["generator"][k], b["generator"][k])
    assert torch.equal(a["gen_losses"], b["gen_losses"]) and len(a["mask_losses"]) == 2


def test_semantic_needs_images_with_the_feature():
    data = synth(size=8)
    for split in (data.train, data.test):
        split.inputs[:] = split.inputs.mean(dim=1, keepdim=True)  # grey: no green anywhere
        planes = torch.nonzero(split.labels == 0).ravel()
        split.inputs[planes[:4], 1, :2] = 1.0  # 4 airplanes with a green band
        split.inputs[planes[:4], 0, :2] = 0.0
        split.inputs[planes[:4], 2, :2] = 0.0
    d = craft("semantic", data, n_adv=4, epsilon=None)
    assert d.info["threshold"] > 0 and len(d.targets) == 4
    assert sorted(d.info["target_test_raw_index"].tolist()) == sorted(
        torch.nonzero(data.test.labels == 0).ravel()[:4].tolist())
    with pytest.raises(ValueError, match="only 4 source-class training images"):
        craft("semantic", data, n_adv=5, epsilon=None)
