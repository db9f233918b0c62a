"""The ``attacks`` suite: every experiment resolves at every scale into configs that build, every
constant carries a source, and the smoke scale runs end to end (on tiny FSDD-format files in
``tmp_path``; on the real data when it is present)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import attacks  # noqa: F401  (registers the attacks)
import defenses  # noqa: F401  (registers the 'none' method)
from benchmark.config import Sourced, build
from benchmark.experiment import SCALES
from benchmark.models import build_model
from benchmark.protocols import get_protocol
from benchmark.protocols.common import build_method
from benchmark.registry import attacks as attack_registry
from benchmark.registry import featurizers
from benchmark.report import render_attack_table
from benchmark.runner import RunOptions, get_suite, run_suite
from benchmark.store import RecordStore
from benchmark.training import TrainConfig, num_outputs
from benchmark.trial import prepare_trial

SUITE = get_suite("attacks")
EXPERIMENTS = [e.name for e in SUITE.experiments]
REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
#: Raw input shape per dataset, and number of task classes per attack (binary tasks have 1 logit).
RAW_SHAPE = {"cifar10": (3, 32, 32)}


def test_suite_lists_every_attack_setting():
    assert EXPERIMENTS == [
        "cifar-mnist-joint", "weber-one-pixel", "weber-four-pixel", "weber-blend",
        "speech-noise-burst", "spectral-pixel", "semantic", "composite", "input-aware", "badnets"]
    for e in SUITE.experiments:
        assert [(m.label, m.name) for m in e.methods] == [("no defense", "none")]
        for scale in SCALES:
            assert e.resolve(scale, 0, SUITE.seed).section("protocol")["name"] == "attack-success"


def _leaves(tree, path=""):
    """Yield (path, value) for every constant of a config (names and section dicts excluded)."""
    if isinstance(tree, Sourced):
        yield path, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            if k == "name" and isinstance(v, str):
                continue
            yield from _leaves(v, f"{path}.{k}" if path else k)
    else:
        yield path, tree


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_constant_is_sourced(name):
    exp = SUITE.experiment(name)
    for scale in SCALES:
        for path, value in _leaves(dict(exp.resolve(scale, 0, SUITE.seed).config)):
            assert isinstance(value, Sourced), f"{name} [{scale}] {path} = {value!r} has no source"
    small = exp.scales["small"]
    for path, value in _leaves(dict(small)):
        assert value.source.startswith(("ours", "paper:", "reference-code")), (path, value.source)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_configs_build_at_every_scale(name, scale):
    tc = SUITE.experiment(name).resolve(scale, 1, SUITE.seed)
    cfg = tc.values
    attack = attack_registry.get(cfg["attack"]["name"])(**cfg["attack"]["params"])
    train = build(TrainConfig, cfg["train"], what="train")
    protocol = get_protocol(cfg["protocol"]["name"])
    build(protocol.Params, cfg["protocol"]["params"])
    build_method(SUITE.experiment(name).methods[0])
    fspec = cfg.get("featurizer")
    if cfg["dataset"]["name"] == "fsdd":
        feat = featurizers.get(fspec["name"])(**fspec["params"])
        shape, n_classes = feat.output_shape(), 10
    else:
        shape = featurizers.get(fspec["name"])(**fspec["params"]).output_shape(RAW_SHAPE["cifar10"])
        classes = getattr(attack.config, "classes", None)
        n_classes = 2 if cfg["attack"]["name"] == "weber-backdoor" and classes is None else \
            (len(classes) if classes else 10)
    model = build_model(cfg["model"]["name"], shape, num_outputs(n_classes), cfg["model"]["params"])
    out = model.eval()(torch.zeros(2, *shape))
    assert out.shape == (2, num_outputs(n_classes))
    assert train.epochs >= 1 and tc.trial == 1


def test_small_scale_is_smaller_than_full():
    for name in EXPERIMENTS:
        exp = SUITE.experiment(name)
        full, small = exp.resolve("full", 0, 0).values, exp.resolve("small", 0, 0).values
        assert small["train"]["epochs"] < full["train"]["epochs"], name
        n_full = full["attack"]["params"].get("n_train")
        n_small = small["attack"]["params"].get("n_train")
        if n_small is not None:
            assert n_full is None or n_small < n_full, name
    for name in ("weber-one-pixel", "weber-four-pixel", "weber-blend", "cifar-mnist-joint"):
        full = SUITE.experiment(name).resolve("full", 0, 0).values["attack"]["params"]
        small = SUITE.experiment(name).resolve("small", 0, 0).values["attack"]["params"]
        assert full["n_adv"] == 150 and small["n_train"] == 5000, name  # paper 000: 150 of 10,000
    joint = SUITE.experiment("cifar-mnist-joint").resolve("small", 0, 0).values["attack"]["params"]
    assert math.isclose(joint["n_adv"] / joint["n_train"], 0.015)


def test_small_scale_cites_existing_calibration_files():
    """Every experiment's small scale was checked on ASR alone, and says where."""
    repo = Path(__file__).resolve().parent.parent
    for exp in SUITE.experiments:
        cited = []
        for path, value in _leaves(dict(exp.scales["small"])):
            files = re.findall(r"results/calibration/[\w.*-]+\.json", value.source)
            if "calibrated on ASR" in value.source:
                assert files, f"{exp.name} {path}: {value.source!r} names no calibration file"
            for pattern in files:
                assert list(repo.glob(pattern)), f"{exp.name} {path}: {pattern} does not exist"
            cited += files
        assert cited, f"experiment {exp.name!r}: no small-scale constant cites its calibration"


# -- end to end on tiny FSDD-format files -----------------------------------------------------

def _write_fsdd(root: Path, speakers=("ann", "bob"), per_digit=12, sr=8000) -> None:
    import soundfile as sf

    folder = root / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in range(10):
        for s in speakers:
            for i in range(per_digit):
                n = int(rng.integers(1500, 4000))
                t = np.arange(n) / sr
                wave = 0.3 * np.sin(2 * np.pi * (200 + 80 * d) * t) + 0.01 * rng.standard_normal(n)
                sf.write(str(folder / f"{d}_{s}_{i}.wav"), wave.astype(np.float32), sr, subtype="PCM_16")


def _run_smoke(data_root: Path, tmp: Path, experiment: str):
    opts = RunOptions(scale="smoke", data_root=data_root, cache_dir=tmp / "cache",
                      output_dir=tmp / "runs", experiments=(experiment,), progress=False)
    summary = run_suite(SUITE, opts, log=lambda _: None)
    recs = [r for r in RecordStore(opts.output_dir).records("attacks") if r.experiment == experiment]
    return summary, recs


def test_speech_smoke_end_to_end_on_fsdd_format_files(tmp_path):
    _write_fsdd(tmp_path / "data")
    summary, recs = _run_smoke(tmp_path / "data", tmp_path, "speech-noise-burst")
    assert summary.written == 1 and len(recs) == 1
    rec = recs[0]
    assert rec.status == "ok" and rec.protocol == "attack-success" and rec.scale == "smoke"
    # 10 digits x 2 speakers: indices 0-4 test (100), 5-11 train (140); 1 % of 140 -> 1 poison,
    # added (the clean part keeps 139); targets = the 10 test recordings of digit 4
    assert rec.extra["n_train"] == 140 and rec.extra["n_adv"] == 1
    assert rec.extra["asr_counts"][1] == 10 and rec.extra["clean_counts"][1] == 100
    assert math.isclose(rec.extra["poison_ratio"], 1 / 140)
    # the recorded counts are those of the trained model (recomputed from the cached run)
    tc = SUITE.experiment("speech-noise-burst").resolve("smoke", 0, SUITE.seed)
    p = prepare_trial(tc, tmp_path / "data", tmp_path / "cache")
    hits = int((p.predict(p.targets.inputs) == 5).sum())
    correct = int((p.predict(p.test.inputs) == p.test.labels).sum())
    assert rec.extra["asr_counts"] == [hits, 10] and rec.extra["clean_counts"] == [correct, 100]
    assert math.isclose(rec.metric("asr_no_defense"), hits / 10)
    table = render_attack_table(recs)
    assert "speech-noise-burst" in table and f"(n=10)" in table and f"(n=100)" in table


@pytest.mark.skipif(not (REAL / "fsdd" / "recordings").is_dir(), reason="FSDD not at ../shared/datasets")
def test_speech_smoke_on_real_fsdd(tmp_path):
    summary, recs = _run_smoke(REAL, tmp_path, "speech-noise-burst")
    assert summary.written == 1 and recs[0].status == "ok"
    extra = recs[0].extra  # FSDD: 2,700 train / 300 test recordings, 30 test recordings of 4
    assert extra["n_train"] == 2700 and extra["n_adv"] == 27
    assert extra["asr_counts"][1] == 30 and extra["clean_counts"][1] == 300
