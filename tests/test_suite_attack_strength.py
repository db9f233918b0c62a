"""The ``attack-strength`` suite: every experiment resolves at every scale into configs that build,
every constant carries a source, every calibration file's recorded command resolves to the
settings it records, and the smoke scale runs end to end (on tiny FSDD-format files in
``tmp_path``; on the real data under ``$BENCHMARK_DATA_ROOT`` when it is present)."""
from __future__ import annotations

import json
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
from benchmark.methods import build_method
from benchmark.registry import attacks as attack_registry
from benchmark.registry import featurizers, protocols
from benchmark.report import render_attack_table
from benchmark.runner import RunOptions, get_suite, run_suite
from benchmark.store import RecordStore
from benchmark.training import TrainConfig, num_outputs
from benchmark.trial import prepare_trial

SUITE = get_suite("attack-strength")
EXPERIMENTS = [e.name for e in SUITE.experiments]
#: Raw input shape per dataset, and number of task classes per attack (binary tasks have 1 logit).
RAW_SHAPE = {"cifar10": (3, 32, 32)}


def test_suite_lists_every_attack_setting():
    assert EXPERIMENTS == [
        "cifar-mnist-joint", "weber-one-pixel", "weber-four-pixel", "weber-blend",
        "speech-noise-burst", "speech-noise-burst-held-out-speaker", "speech-noise-burst-espeak", "spectral-pixel", "semantic", "composite", "input-aware", "badnets",
        "text-insert", "text-duplicate", "text-delete", "text-semantic", "text-syntactic"]
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
    protocol = protocols.get(cfg["protocol"]["name"])
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


# -- calibration files reproduce from their own commands (no data, no training) -------------

CALIBRATION = sorted((Path(__file__).resolve().parent.parent / "results" / "calibration").glob("*.json"))
#: Training examples per original class of each dataset's training split (CIFAR-10: 5,000 per
#: class; FSDD: 270 recordings per digit in the train split), so counts need no data.
CLASS_SIZES = {"cifar10": [5000] * 10, "fsdd": [270] * 10,
               "sst2-syntactic": [3310, 3610]}  # negatives / positives of Hidden Killer's clean/train.tsv


def _class_sizes(dataset: str | dict) -> list[int]:
    """Training images / clips per class of a dataset spec, without its data: CIFAR-10 and FSDD's
    published sizes (FSDD held out by speaker: five speakers x 50 clips per digit), the espeak
    recipe's own count, the embedded digits counted."""
    spec = {"name": dataset, "params": {}} if isinstance(dataset, str) else dataset
    name, params = spec["name"], spec.get("params") or {}
    if name == "fsdd" and params.get("held_out_speaker"):
        return [5 * 50] * 10
    if name == "espeak-digits":
        return [params["n_speakers"] * (params["clips_per_digit"] - params["n_test"])] * 10
    if name not in CLASS_SIZES:
        from benchmark.registry import datasets

        labels = datasets.get(name)(data_root=None, cache_dir=None).train.labels  # embedded (digits)
        CLASS_SIZES[name] = torch.bincount(labels).tolist()
    return CLASS_SIZES[name]


def _calibration_runs():
    from benchmark.tools import calibrate_attack as C

    for path in CALIBRATION:
        rec = json.loads(path.read_text())
        if not rec.get("command", "").startswith(C.TOOL):
            continue  # e.g. quick_toy_pair.json, made by another tool
        yield path, rec


@pytest.mark.parametrize("path", [p for p, _ in _calibration_runs()], ids=lambda p: p.name)
def test_calibration_file_reproduces_from_its_command(path):
    """The recorded command, resolved (``--dry-run``, no training), runs the settings the file
    records: same experiment, scale, trial count and grid points, and every grid point crafts the
    recorded |D_adv| and |D_tr| (counted from the resolved attack config)."""
    from benchmark.tools import calibrate_attack as C

    rec = json.loads(path.read_text())
    assert not re.search(r"/work/|/tmp/|/root/|/home/", rec["command"]), rec["command"]
    args = C.parse_args(C.parse_command(rec["command"]))
    suite = get_suite(args.suite)
    dry = C.resolve(suite.experiment(args.experiment), C.parse_grid(args.grid), args.trials, args.scale,
                    args.min_asr, suite.seed)
    for key in ("experiment", "scale", "trials", "min_asr"):
        assert dry[key] == rec[key], (key, dry[key], rec[key])
    assert [r["attack_params"] for r in dry["settings"]] == [r["attack_params"] for r in rec["settings"]]
    exp = suite.experiment(args.experiment)
    for got, want in zip(dry["settings"], rec["settings"]):
        tc = C.settings(exp, {k: [v] for k, v in got["attack_params"].items()}, args.scale)[0] \
            .trials(args.scale, 1, suite.seed)[0]
        spec = tc.values["attack"]
        assert spec == got["attack"]
        attack = attack_registry.get(spec["name"])(**spec["params"])
        counts = attack.poison_counts(_class_sizes(tc.values["dataset"]))
        assert (counts.n_adv, counts.n_train) == (want["n_adv"], want["n_train"]), (spec, want)
    cap = rec.get("max_scorer_auprc")  # --scorers: the toy must not be solved by trivial scorers

    def ok(r: dict) -> bool:
        return r["asr_mean"] >= rec["min_asr"] and (cap is None or all(
            v < cap for v in r["scorer_auprc_mean"].values()))

    chosen = next((r for r in rec["settings"] if ok(r)), None)
    assert rec["chosen"] == chosen


def test_calibration_command_records_no_machine_paths():
    from benchmark.tools import calibrate_attack as C

    argv = ["--suite", "attack-strength", "--data-root", "/work/shared/datasets", "--cache-dir=/tmp/c",
            "--experiment", "badnets", "--grid", '{"epsilon": [0.1]}', "--dry-run"]
    cmd = C.command_line(argv)
    assert cmd == ("python -m benchmark.tools.calibrate_attack --suite attack-strength --data-root "
                   "\"$BENCHMARK_DATA_ROOT\" --cache-dir \"$BENCHMARK_CACHE_DIR\" --experiment badnets "
                   "--grid '{\"epsilon\": [0.1]}'")
    assert C.parse_args(C.parse_command(cmd)).grid == '{"epsilon": [0.1]}'


def test_calibrate_dry_run_prints_the_resolved_grid(capsys):
    from benchmark.tools import calibrate_attack as C

    C.main(["--suite", "attack-strength", "--experiment", "weber-one-pixel", "--scale", "small",
            "--trials", "2", "--grid", '{"delta": [1.0, 1.7320508]}', "--dry-run"])
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] and len(out["settings"]) == 2
    # the grid wins over the scale's override (delta), the scale's other keys stay (n_adv = 300)
    params = [r["attack"]["params"] for r in out["settings"]]
    assert [p["delta"] for p in params] == [1.0, 1.7320508] and {p["n_adv"] for p in params} == {300}
    assert all(len(r["trial_hashes"]) == 2 for r in out["settings"])


# -- results/poison_rates.md is current ----------------------------------------------------------

def test_poison_rates_table_matches_the_configs():
    """Every cell of ``results/poison_rates.md`` is what ``poison_counts`` gives for the suite's
    configs today (class sizes of the real training splits, no data needed), and the file starts
    with the command that produced it."""
    from types import SimpleNamespace

    from benchmark.tools import poison_rates as PR

    text = (Path(__file__).resolve().parent.parent / "results" / "poison_rates.md").read_text()
    assert text.startswith("```sh\n" + PR.TOOL + " ")
    header = next(line for line in text.splitlines() if line.startswith("| experiment |"))
    scales = re.findall(r"at `(\w+)`", header)
    assert sorted(scales) == sorted(SCALES)
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| experiment", "|---"))}
    assert list(rows) == EXPERIMENTS

    def load(name, params=None):
        sizes = _class_sizes({"name": name, "params": params or {}})
        labels = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
        return SimpleNamespace(train=SimpleNamespace(labels=labels), num_classes=len(sizes))

    for exp in SUITE.experiments:
        for k, scale in enumerate(scales):
            row = PR.count(exp, scale, SUITE.seed, load, craft=False)
            assert rows[exp.name][3 + k] == PR.cell(row), (exp.name, scale)


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
    recs = [r for r in RecordStore(opts.output_dir).records("attack-strength") if r.experiment == experiment]
    return summary, recs


def test_speech_smoke_end_to_end_on_fsdd_format_files(tmp_path):
    _write_fsdd(tmp_path / "data")
    summary, recs = _run_smoke(tmp_path / "data", tmp_path, "speech-noise-burst")
    assert summary.written == 1 and len(recs) == 1
    rec = recs[0]
    assert rec.status == "ok" and rec.protocol == "attack-success" and rec.scale == "smoke"
    # 10 digits x 2 speakers: indices 0-4 test (100), 5-11 train (140); 1 % of |D_tr| = 140 -> 1
    # poison, a copy counted inside |D_tr| (the clean part keeps 139); targets = the 10 test
    # recordings of digit 4
    assert rec.extra["n_train"] == 140 and rec.extra["n_adv"] == 1 and rec.extra["n_targets"] == 10
    assert rec.extra["clean_counts"][1] == 100
    assert math.isclose(rec.extra["poison_ratio"], 1 / 140)
    # the recorded counts are those of the trained model (recomputed from the cached run): a
    # target counts when the model gets its clean recording right, a hit when it says 5 triggered
    tc = SUITE.experiment("speech-noise-burst").resolve("smoke", 0, SUITE.seed)
    p = prepare_trial(tc, tmp_path / "data", tmp_path / "cache")
    eligible = p.predict(p.targets_clean.inputs) == p.targets_clean.labels
    hits = int(((p.predict(p.targets.inputs) == 5) & eligible).sum())
    n_elig = int(eligible.sum())
    correct = int((p.predict(p.test.inputs) == p.test.labels).sum())
    assert rec.extra["asr_counts"] == [hits, n_elig] and rec.extra["clean_counts"] == [correct, 100]
    table = render_attack_table(recs)
    assert "speech-noise-burst" in table and f"({correct}/100)" in table


def test_speech_smoke_on_real_fsdd(tmp_path, real_dataset):
    summary, recs = _run_smoke(real_dataset("fsdd", "recordings"), tmp_path, "speech-noise-burst")
    assert summary.written == 1 and recs[0].status == "ok"
    extra = recs[0].extra  # FSDD: 2,700 train / 300 test recordings, 30 test recordings of 4
    assert extra["n_train"] == 2700 and extra["n_adv"] == 27
    assert extra["n_targets"] == 30 and extra["asr_counts"][1] <= 30 and extra["clean_counts"][1] == 300
