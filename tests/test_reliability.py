"""Reliability fixes of issue 8 (items 8 and 9): stale results and bad input, each a test that
failed before its fix."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark.runner as runner
from benchmark.cli import main
from benchmark.config import ConfigError, ours
from benchmark.data.types import DatasetError, RawDataset, Split
from benchmark.experiment import Experiment, MethodSpec, Suite
from benchmark.registry import datasets
from benchmark.runner import RunOptions, run_suite
from benchmark.store import RecordStore
from benchmark.suites.quick import TOY_CONFIG

GAS = MethodSpec("GAS", "gas")


def _opts(tmp_path, **kw):
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("output_dir", tmp_path / "runs")
    return RunOptions(scale="smoke", progress=False, **kw)


def _suite(methods=(GAS,), dataset=None):
    cfg = dict(TOY_CONFIG) if dataset is None else {**TOY_CONFIG, "dataset": dataset}
    return Suite("rel", 1, "", (Experiment("toy", "", {**cfg, "trials": ours(1)}, tuple(methods)),))


class _CountTrain:
    def __init__(self, monkeypatch):
        self.n = 0
        real = runner.prepare_trial.__globals__["train"]

        def counting(*a, **k):
            self.n += 1
            return real(*a, **k)

        monkeypatch.setitem(runner.prepare_trial.__globals__, "train", counting)


# -- 8a: a changed method parameter never reuses a record ------------------------------------

def test_changed_method_parameters_recompute_and_unchanged_rerun_does_not(tmp_path):
    a = run_suite(_suite(), _opts(tmp_path))
    assert a.written == 1
    again = run_suite(_suite(), _opts(tmp_path))
    assert again.written == 0 and again.skipped == 1
    changed = run_suite(_suite([MethodSpec("GAS", "gas", params={"min_norm": 0.5})]), _opts(tmp_path))
    assert changed.written == 1  # same label, other parameters: a new record, not the old one
    recs = list(RecordStore(tmp_path / "runs").records("rel"))
    assert len(recs) == 2 and len({r.method_hash for r in recs}) == 2
    from benchmark.report import render

    table = render(recs, "rel")
    assert "GAS [" in table  # the two configurations are never mixed in one row


def test_same_label_twice_in_one_run_is_an_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="duplicate method labels"):
        _suite([GAS, MethodSpec("GAS", "gas-l")])
    code = main(["run", "--dry-run", "--scale", "smoke", "--experiment", "inverted-digit",
                 "--defense", "gas-l", "--defense", 'gas-l={"min_norm": 0.5}'])
    assert code == 2 and "two methods are labelled ['gas-l']" in capsys.readouterr().err
    assert main(["run", "--dry-run", "--scale", "smoke", "--experiment", "inverted-digit",
                 "--defense", "gas-l", "--defense", 'wide:gas-l={"min_norm": 0.5}']) == 0


# -- 8b: caches are keyed on what they were computed from ------------------------------------

def _shifted_digits(data_root: Path, cache_dir: Path | None = None, download: bool = False) -> RawDataset:
    """The embedded digits; with a file ``<data_root>/shift`` present, slightly different pixels."""
    ds = datasets.get("digits")(data_root=None)
    if (Path(data_root) / "shift").is_file():
        x = ds.train.inputs.clone()
        x[:, 0, 0, 0] += 0.25
        ds = RawDataset(ds.name, ds.modality, ds.classes, Split(x, ds.train.labels), ds.test, ds.sample_rate,
                        dict(ds.source))
    return ds


if "test-shifted-digits" not in datasets:
    datasets.add("test-shifted-digits", _shifted_digits, "digits, shifted when <root>/shift exists (tests)")


def test_other_data_never_reuses_a_trained_model_or_record(tmp_path, monkeypatch):
    counter = _CountTrain(monkeypatch)
    suite = _suite(dataset={"name": "test-shifted-digits", "params": {}})
    plain, shifted = tmp_path / "plain", tmp_path / "shifted"
    plain.mkdir()
    shifted.mkdir()
    (shifted / "shift").write_text("1")
    assert run_suite(suite, _opts(tmp_path, data_root=plain)).written == 1
    assert counter.n == 1
    assert run_suite(suite, _opts(tmp_path, data_root=shifted)).written == 1  # not "already done"
    assert counter.n == 2  # retrained on the other data
    assert run_suite(suite, _opts(tmp_path, data_root=plain)).written == 0
    assert counter.n == 2  # unchanged: nothing recomputed
    recs = list(RecordStore(tmp_path / "runs").records("rel"))
    assert len({r.data_fingerprint for r in recs}) == 2
    from benchmark.report import render

    assert render(recs, "rel").count("[data ") == 2  # one row per dataset, never mixed


def test_report_leaves_out_records_of_an_older_configuration(tmp_path):
    from benchmark.runner import current_records

    run_suite(_suite(), _opts(tmp_path))
    changed = Suite("rel", 1, "", (Experiment("toy", "", {**TOY_CONFIG, "trials": ours(1),
                                                          "train": {**TOY_CONFIG["train"], "epochs": ours(3)}},
                                              (GAS,)),))
    assert current_records(_suite(), tmp_path / "runs") == (current_records(_suite(), tmp_path / "runs")[0], 0)
    kept, stale = current_records(changed, tmp_path / "runs")
    assert kept == [] and stale == 1  # the old record is not reported as the new configuration's


def test_corrupt_training_cache_file_is_named_and_rebuilt(tmp_path, monkeypatch, caplog):
    counter = _CountTrain(monkeypatch)
    run_suite(_suite(), _opts(tmp_path))
    (cached,) = (tmp_path / "cache" / "training").glob("*.pt")
    cached.write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING):
        summary = run_suite(_suite([MethodSpec("GAS-L", "gas-l")]), _opts(tmp_path))
    assert summary.written == 1 and counter.n == 2
    assert str(cached) in caplog.text and "retraining" in caplog.text


# -- 9: bad input is an error before any work ------------------------------------------------

@pytest.mark.parametrize("spec,message", [
    ('gas={"min_nrom": 1}', "did you mean 'min_norm'"),
    ('gas={"min_norm": "abc"}', "'min_norm' of defense GAS must be float"),
    ("gas=[1,2]", "must be a JSON object"),
    ("gas={not json", "must be a JSON object"),
    ("if", "missing required config key(s) for defense InfluenceFunctions: 'layers'"),
    ("none", "evaluated by no selected experiment"),
])
def test_bad_method_specs_fail_the_dry_run(spec, message, capsys):
    assert main(["run", "--dry-run", "--scale", "smoke", "--defense", spec]) == 2
    assert message in capsys.readouterr().err


def test_dry_run_and_run_share_one_validation(tmp_path, monkeypatch, capsys):
    counter = _CountTrain(monkeypatch)
    args = ["run", "--scale", "smoke", "--no-progress", "--output-dir", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "c"), "--defense", 'gas={"min_norm": "abc"}']
    assert main(args) == 2 and counter.n == 0  # the real run fails the same way, before training


@pytest.mark.parametrize("args,message", [
    (["--trials", "0"], "--trials must be >= 1"),
    (["--trials", "-3"], "--trials must be >= 1"),
    (["--method", "GASS"], "did you mean 'GAS'"),
    (["--experiment", "inverted-digits"], "did you mean 'inverted-digit'"),
])
def test_selections_that_run_nothing_are_errors(args, message, capsys):
    assert main(["run", "--dry-run", "--scale", "smoke", *args]) == 2
    assert message in capsys.readouterr().err


def test_unusable_output_or_cache_dir_fails_before_training(tmp_path, monkeypatch, capsys):
    counter = _CountTrain(monkeypatch)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    base = ["run", "--scale", "smoke", "--no-progress", "--trials", "1", "--experiment", "inverted-digit",
            "--method", "GAS"]
    assert main([*base, "--output-dir", str(a_file), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main([*base, "--output-dir", str(tmp_path / "r"), "--cache-dir", str(a_file / "sub")]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert counter.n == 0


def test_ctrl_c_says_how_to_resume(monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_suite", interrupted)
    assert main(["run", "--scale", "smoke", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "rerun the same command to resume" in err and "Traceback" not in err


def test_empty_class_folder_is_an_error(tmp_path):
    from benchmark.data.cifar10 import CLASSES, list_imagefolder

    for split in ("train", "test"):
        for cls in CLASSES:
            (tmp_path / split / cls).mkdir(parents=True)
            if cls != "cat":
                (tmp_path / split / cls / "0001.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="cat holds no images"):
        list_imagefolder(tmp_path)


def test_model_and_dataset_parameters_are_checked_by_the_dry_run():
    bad_model = Suite("b", 1, "", (Experiment("e", "", {**TOY_CONFIG, "model": {"name": "mlp", "params": {"widht": 3}}},
                                              (GAS,)),))
    with pytest.raises(ConfigError, match="unknown parameter"):
        runner.plan_suite(bad_model, RunOptions(scale="smoke"))
    bad_ds = Suite("b", 1, "", (Experiment("e", "", {**TOY_CONFIG, "dataset": {"name": "digits", "params": {"x": 1}}},
                                           (GAS,)),))
    with pytest.raises(ConfigError, match="unknown parameter"):
        runner.plan_suite(bad_ds, RunOptions(scale="smoke"))


def test_command_line_methods_run_beside_a_method_selection(capsys):
    """`--method GAS --defense input-norm` runs both (the selection does not drop the added one)."""
    assert main(["run", "--dry-run", "--scale", "smoke", "--experiment", "inverted-digit", "--method", "GAS",
                 "--defense", "input-norm"]) == 0
    assert "2 method(s)" in capsys.readouterr().out
