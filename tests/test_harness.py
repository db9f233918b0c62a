import json

import pytest

import benchmark.runner as runner
from benchmark.cli import main
from benchmark.config import ConfigError, build, ours, paper
from benchmark.experiment import Experiment, MethodSpec
from benchmark.registry import RegistryError
from benchmark.runner import RunOptions, get_suite, run_suite
from benchmark.store import RecordStore
from benchmark.training import TrainConfig


TWO_METHODS = ("TracInCP", "GAS")


def _opts(tmp_path, **kw):
    return RunOptions(scale="smoke", cache_dir=tmp_path / "cache", output_dir=tmp_path / "runs",
                      progress=False, **kw)


def test_quick_smoke_end_to_end_and_seeded_determinism(tmp_path):
    suite = get_suite("quick")
    kw = dict(trials=2, experiments=("inverted-digit",), methods=TWO_METHODS)
    s1 = run_suite(suite, _opts(tmp_path / "a", **kw))
    s2 = run_suite(suite, _opts(tmp_path / "b", **kw))
    assert s1.written == s2.written == 2 * 2
    recs = {(r.trial, r.method): r for r in RecordStore(tmp_path / "a" / "runs").records("quick")}
    for r in RecordStore(tmp_path / "b" / "runs").records("quick"):
        twin = recs[(r.trial, r.method)]
        assert r.score_hash == twin.score_hash and r.metrics == twin.metrics
    r = next(iter(recs.values()))
    # self-describing record
    assert r.suite == "quick" and r.scale == "smoke" and r.config_hash and r.provenance["git"]
    assert r.metrics["auprc"].higher_is_better is True
    assert 0 <= r.metrics["auprc"].value <= 1
    assert r.config["attack"]["params"]["adv_fraction"]["source"].startswith("paper:")
    assert set(r.granted) == {"checkpoints", "queries"} and r.oracle == []
    assert r.trial_metrics["asr_no_defense"].value > 0


def test_killed_run_resumes_without_redoing_finished_work(tmp_path, monkeypatch):
    suite = get_suite("quick")
    opts = _opts(tmp_path, trials=3, experiments=("inverted-digit",), methods=TWO_METHODS)
    calls = {"n": 0}
    from benchmark.protocols.adversarial_set import AdversarialSet

    real_eval = AdversarialSet.evaluate

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # die in the middle of trial 1 (after its first method)
            raise KeyboardInterrupt
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(AdversarialSet, "evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, opts)
    store = RecordStore(opts.output_dir)
    done = {p: p.stat().st_mtime_ns for p in opts.output_dir.rglob("*.json")}
    assert len(done) == 3  # trial 0 (2 methods) + trial 1's first method, each complete JSON
    for p in done:
        json.loads(p.read_text())
    assert not list(opts.output_dir.rglob("*.tmp"))

    trained = {"n": 0}
    real_train = runner.prepare_trial.__globals__["train"]

    def counting_train(*a, **k):
        trained["n"] += 1
        return real_train(*a, **k)

    monkeypatch.setitem(runner.prepare_trial.__globals__, "train", counting_train)
    monkeypatch.setattr(AdversarialSet, "evaluate", real_eval)
    summary = run_suite(suite, opts)
    assert summary.skipped == 3 and summary.written == 3
    assert trained["n"] == 1  # trials 0 and 1 reuse the cached trajectory; only trial 2 trains
    for p, mtime in done.items():
        assert p.stat().st_mtime_ns == mtime  # finished records untouched
    assert len(list(store.records("quick"))) == 6


def test_unknown_names_and_keys_are_errors(tmp_path, capsys):
    assert main(["run", "--suite", "quik", "--output-dir", str(tmp_path)]) == 2
    assert "did you mean 'quick'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown config key"):
        Experiment("e", "", {"dataset": {"name": "digits"}, "epochs": 3}, ())
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        build(TrainConfig, {"batchsize": 3})
    exp = Experiment("e", "", {"dataset": {"name": "digitz"}, "attack": {"name": "inverted-digit"},
                               "model": {"name": "mlp"}, "train": {}}, (MethodSpec("G", "gas"),))
    from benchmark.trial import prepare_trial

    with pytest.raises(RegistryError, match="did you mean 'digits'"):
        prepare_trial(exp.resolve("smoke", 0, 0), tmp_path, tmp_path)
    bad_attack = Experiment("e", "", {"dataset": {"name": "digits"},
                                      "attack": {"name": "inverted-digit", "params": {"adv_fractoin": 0.1}},
                                      "model": {"name": "mlp"}, "train": {}}, ())
    with pytest.raises(ConfigError, match="did you mean 'adv_fraction'"):
        prepare_trial(bad_attack.resolve("smoke", 0, 0), tmp_path, tmp_path)
    bad_model = Experiment("e", "", {"dataset": {"name": "digits"}, "attack": {"name": "inverted-digit"},
                                     "model": {"name": "mlp", "params": {"widht": 3}}, "train": {}}, ())
    with pytest.raises(ConfigError, match="unknown parameter"):
        prepare_trial(bad_model.resolve("smoke", 0, 0), tmp_path, tmp_path)
    from benchmark.methods import build_method

    with pytest.raises(ConfigError, match="unknown config key"):
        build_method(MethodSpec("G", "gas", params={"kappa": 3}))


def test_sourced_constants_and_hash():
    exp = Experiment("e", "", {"trials": ours(3), "train": {"lr": paper(0.1, "000 Sec. 4")}}, (),
                     scales={"smoke": {"trials": ours(1)}})
    a, b = exp.resolve("smoke", 0, 0), exp.resolve("small", 0, 0)
    assert exp.num_trials("smoke") == 1 and exp.num_trials("small") == 3
    assert a.sources()["train.lr"] == "paper:000 Sec. 4"
    assert a.hash == b.hash  # the trial count does not change a trial (resume after --trials N)
    assert a.hash == exp.resolve("smoke", 0, 0).hash
    assert a.hash != exp.resolve("smoke", 1, 0).hash
    with pytest.raises(ConfigError, match="unknown scale"):
        exp.resolve("huge", 0, 0)
    with pytest.raises(ConfigError):
        ours(1).__class__(1, "made up")


def test_cli_list_and_report(tmp_path, capsys):
    assert main(["list", "defenses"]) == 0
    out = capsys.readouterr().out
    assert "gas" in out and "tracincp" in out
    assert main(["list", "defences"]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert main(["run", "--scale", "smoke", "--trials", "1", "--no-progress", "--experiment", "inverted-digit",
                 "--method", "GAS", "--method", "TracInCP",
                 "--output-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]) == 0
    assert "Paired difference GAS − TracInCP" in capsys.readouterr().out
    fig = tmp_path / "fig.png"
    assert main(["report", "--output-dir", str(tmp_path / "r"), "--format", "latex", "--figure", str(fig)]) == 0
    out = capsys.readouterr().out
    assert "\\begin{tabular}" in out and fig.stat().st_size > 1000
    assert main(["run", "--dry-run", "--scale", "full"]) == 0


def test_calibration_grid_overrides_the_scale_setting(tmp_path):
    from benchmark.tools.calibrate_attack import calibrate

    exp = get_suite("quick").experiment("mitigation")  # its attack sets epsilon 0.03
    scaled = Experiment(exp.name, "", exp.config, (), scales={"smoke": {"attack": {"params": {"epsilon": ours(0.2)}}}})
    out = calibrate(scaled, {"epsilon": [0.05]}, trials=1, scale="smoke", data_root=tmp_path,
                    cache_dir=tmp_path, min_asr=0.0)
    row = out["settings"][0]
    assert row["n_adv"] == round(0.05 * row["n_train"])
