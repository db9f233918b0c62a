"""Golden results and ``python -m benchmark check``: tolerances from seed spread, and a check that
fails on a perturbed golden value, naming entry, metric, expected, got and tolerance."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark import golden as g
from benchmark.cli import DEFAULT_GOLDEN, main
from benchmark.config import ours
from benchmark.experiment import Entry, Experiment, MethodSpec, Suite
from benchmark.registry import suites
from benchmark.runner import get_suite
from benchmark.suites.quick import TOY_CONFIG
from benchmark.tools import make_golden

SUITE = "test-golden-tiny"


@suites.register(SUITE, "tiny suite for the golden-check tests")
def _tiny() -> Suite:
    cfg = {**TOY_CONFIG, "train": {**TOY_CONFIG["train"], "epochs": ours(2), "checkpoints_per_epoch": ours(1)},
           "trials": ours(1)}
    exp = Experiment(name="toy", description="tiny", config=cfg,
                     methods=(MethodSpec("Loss", "loss"), MethodSpec("Random", "random")))
    return Suite(name=SUITE, version=1, description="tiny", experiments=(exp,),
                 entries=(Entry("toy-entry", "000", "Fig. 1", "tiny", ("toy",)),))


def test_tolerance_is_k_times_seed_sd_with_a_floor():
    tol, sd = g.tolerance(0.5, [0.4, 0.5, 0.6])
    assert sd == pytest.approx(0.1) and tol == pytest.approx(g.K_SPREAD * 0.1)
    tol, sd = g.tolerance(2.0, [2.0, 2.0])
    assert sd == 0 and tol == pytest.approx(g.FLOOR_ABS + g.FLOOR_REL * 2.0)
    assert g.tolerance(1.0, [1.0])[1] == 0.0  # one seed: no spread, the floor


def test_rounding_reruns_widen_a_tolerance_the_seeds_left_narrow(tmp_path):
    """A value that barely moves across seeds but moves under another summation order (the
    failure on a second machine: 4 of 282 values) gets K x its rounding move as tolerance."""
    tol, sd = g.tolerance(4.0, [4.0, 5.0, 3.0], rounding=[4.0, 7.0])
    assert sd == pytest.approx(1.0) and tol == pytest.approx(g.K_SPREAD * 3.0)
    assert g.tolerance(4.0, [4.0, 5.0, 3.0], rounding=[4.0])[0] == pytest.approx(g.K_SPREAD * 1.0)
    key = ("toy", "Loss", "auprc")
    out = g.build_golden({key: 4.0}, {0: {key: 4.0}, 1: {key: 5.0}, 2: {key: 3.0}}, suite="s", suite_version=1,
                         scale="smoke", seed=0, command="c", rounding={2: {key: 7.0}})
    assert out["values"][0]["tolerance"] == pytest.approx(9.0) and out["rounding_reruns"] == ["2"]
    other = g.build_golden({key: 4.0}, {0: {key: 4.0}}, suite="s", suite_version=1, scale="smoke", seed=0,
                           command="c", rounding={"golden@abc": g.golden_values(out) | {key: 6.0}})
    assert other["values"][0]["tolerance"] == pytest.approx(6.0)  # an earlier machine's value, 2 away
    assert {"cpu", "torch", "numpy"} <= set(out["built_with"])
    # a rounding rerun trains its own models: the data caches are shared, the training cache is not
    from benchmark.tools.make_golden import _rounding_cache

    (tmp_path / "training").mkdir()
    (tmp_path / "cifar10").mkdir()
    r = _rounding_cache(tmp_path, 2)
    assert (r / "cifar10").resolve() == (tmp_path / "cifar10").resolve() and not (r / "training").exists()
    assert _rounding_cache(tmp_path, 3) != r and not (tmp_path / "rounding-threads-3" / "rounding-threads-2").exists()


def test_compare_names_every_value_out_of_tolerance():
    golden = {"values": [
        {"experiment": "e", "method": "m", "metric": "auprc", "expected": 0.5, "tolerance": 0.1},
        {"experiment": "e", "method": "m", "metric": "rank", "expected": 3.0, "tolerance": 0.5},
        {"experiment": "e", "method": "n", "metric": "auprc", "expected": math.nan, "tolerance": 0.1},
        {"experiment": "e", "method": "o", "metric": "auprc", "expected": 0.2, "tolerance": 0.1},
    ]}
    got = {("e", "m", "auprc"): 0.55, ("e", "m", "rank"): 4.0, ("e", "n", "auprc"): math.nan}
    fails = g.compare(golden, got, lambda exp: "000-fig1")
    assert [(f.method, f.metric) for f in fails] == [("m", "rank"), ("o", "auprc")]
    msg = fails[0].describe()
    for part in ("[000-fig1]", "rank", "expected 3", "got 4", "tolerance 0.5"):
        assert part in msg
    assert "got missing" in fails[1].describe()
    assert g.compare(golden, {**got, ("e", "n", "auprc"): 0.3, ("e", "m", "rank"): 3.0,
                              ("e", "o", "auprc"): 0.2})[0].method == "n"  # NaN expected, number got


def test_check_passes_on_its_own_golden_and_fails_on_a_perturbed_value(tmp_path, capsys, one_thread):
    work, cache = tmp_path / "work", tmp_path / "cache"
    out = tmp_path / "golden.json"
    assert make_golden.main(["--suite", SUITE, "--seeds", "1", "--work-dir", str(work), "--cache-dir", str(cache),
                             "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seeds"] == [0, 1] and data["suite"] == SUITE
    keys = {(v["experiment"], v["method"], v["metric"]) for v in data["values"]}
    assert ("toy", "Loss", "auprc") in keys and ("toy", g.ATTACK, "clean_accuracy") in keys
    assert main(["check", "--golden", str(out), "--cache-dir", str(cache), "--no-progress"]) == 0
    assert "within tolerance" in capsys.readouterr().out

    for v in data["values"]:
        if (v["method"], v["metric"]) == ("Loss", "auprc"):
            v["expected"] += 10 * v["tolerance"] + 0.01
    out.write_text(json.dumps(data))
    assert main(["check", "--golden", str(out), "--cache-dir", str(cache), "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "FAIL [toy-entry] toy / Loss / auprc: expected" in text and "tolerance" in text


def test_check_refuses_a_golden_of_another_suite_version(tmp_path, capsys):
    bad = tmp_path / "golden.json"
    bad.write_text(json.dumps({"schema": g.GOLDEN_SCHEMA, "suite": SUITE, "suite_version": 99, "scale": "smoke",
                               "seed": 0, "values": []}))
    assert main(["check", "--golden", str(bad)]) == 2
    assert "v99" in capsys.readouterr().err
    assert main(["check", "--golden", str(tmp_path / "none.json")]) == 2
    assert "make_golden" in capsys.readouterr().err


def test_committed_golden_matches_the_paper_suite():
    """The committed golden file is of the current paper suite at smoke, and every value's
    tolerance comes from at least two seeds."""
    data = g.load_golden(DEFAULT_GOLDEN)
    suite = get_suite("paper")
    assert data["suite"] == "paper" and data["scale"] == "smoke" and data["suite_version"] == suite.version
    assert len(data["seeds"]) >= 3
    names = {e.name for e in suite.experiments}
    assert {v["experiment"] for v in data["values"]} <= names
    assert all(v["n_seeds"] >= 2 for v in data["values"] if v["method"] != g.ATTACK or v["metric"] == "clean_accuracy")
    assert Path(DEFAULT_GOLDEN).is_file()
