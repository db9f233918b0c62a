"""``run --dry-run --probe``: every experiment built at its scale, a few training steps, every
method run once; nothing recorded, nothing cached."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.config import ConfigError
from benchmark.runner import RunOptions, get_suite, probe_suite


def test_probe_runs_every_method_of_every_experiment(tmp_path, one_thread):
    opts = RunOptions(scale="smoke", cache_dir=tmp_path / "cache", output_dir=tmp_path / "runs", progress=False)
    suite = get_suite("quick")
    res = probe_suite(suite, opts, steps=2, log=lambda _m: None)
    assert [r.experiment for r in res] == [e.name for e in suite.experiments]
    for r, e in zip(res, suite.experiments):
        assert set(r.methods) == {m.label for m in e.methods} and all(v.startswith("ok") for v in r.methods.values())
        assert r.n_train == 2 * 32  # two batches of the toy's batch size
    assert not (tmp_path / "runs").exists()  # nothing recorded
    assert not list((tmp_path / "cache").rglob("training/*.pt"))  # nothing cached


def test_probe_flags(capsys):
    assert main(["run", "--probe"]) == 2
    assert "--probe needs --dry-run" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="probe-steps"):
        probe_suite(get_suite("quick"), RunOptions(scale="smoke"), steps=0)


def test_probe_retrains_on_fewer_examples_than_a_batch(tmp_path, one_thread):
    """`--probe --scale full` failed at t1-001 (remove-and-retrain drops 1.5 x the probe's D_adv,
    leaving 64 examples for a batch of 128 with drop_last): a probe keeps a last partial batch."""
    from benchmark.protocols.common import retrain
    from benchmark.trial import prepare_trial

    tc = get_suite("quick").experiment("mitigation").resolve("smoke", 0, 0)
    assert tc.values["train"].get("drop_last", True)  # the trainer's default: a short set cannot train
    p = prepare_trial(tc, tmp_path, tmp_path / "cache", probe_steps=2)
    keep = np.zeros(len(p.train.labels), dtype=bool)
    keep[: tc.values["train"]["batch_size"] // 2] = True
    run = retrain(p, keep, "probe-short")
    assert len(run.checkpoints) >= 1
