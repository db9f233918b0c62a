"""Remove-and-retrain and target-identification protocols on toys where the answer is known."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import types

from benchmark.api import AttackedData, Defense, NoParams, TargetRanker
from benchmark.config import ConfigError
from benchmark.data.types import Split
from benchmark.experiment import MethodSpec
from benchmark.methods import build_method
from benchmark.protocols.filtering import Filtering
from benchmark.protocols.mitigation import Mitigation
from benchmark.protocols.target_identification import TargetIdentification
from benchmark.registry import protocols, target_rankers
from benchmark.rng import numpy_rng
from benchmark.runner import get_suite
from benchmark.trial import Featurized, PreparedTrial, make_model_factory, prepare_trial
from benchmark.training import TrainConfig, train

THRESHOLD_2 = {"name": "threshold", "params": {"zeta": 2.0}}


def _count_calls(monkeypatch, owner, name: str) -> dict:
    """Wrap ``owner.name`` so that calls are counted in the returned ``{"n": ...}``."""
    calls = {"n": 0}
    real = getattr(owner, name)

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(owner, name, counting)
    return calls


def _quick_trial(tmp_path, experiment: str, trial: int = 0) -> PreparedTrial:
    tc = get_suite("quick").experiment(experiment).resolve("smoke", trial, 0)
    return prepare_trial(tc, tmp_path, tmp_path / "cache")


def test_mitigation_removes_adversarial_set_and_beats_random_control(tmp_path):
    p = _quick_trial(tmp_path, "mitigation")
    proto = Mitigation(removal=THRESHOLD_2, max_removal_fraction=0.05)
    state = proto.setup(p, numpy_rng(0))
    assert state is not None and state.target_pred.item() == p.attacked.y_adv[0].item()
    result = proto.evaluate(p, state, build_method(MethodSpec("GAS", "gas")), numpy_rng(1))
    m = result.metrics
    assert m["attack_success_rate"] == 0.0  # the loop stops only when the target flipped back
    assert m["pct_adv_removed"] >= 50.0
    assert m["pct_clean_removed"] < 5.0
    n_removed = result.extra["n_removed"]
    assert 0 < n_removed <= int(0.05 * len(p.train.labels))
    assert result.extra["human_review"] is False and m["retrain_rounds"] >= 1
    # the random control removed as many examples and left the attack in place
    assert m["control_attack_success_rate"] > m["attack_success_rate"]
    assert m["asr_all_targets"] < p.trial_metrics["asr_no_defense"]


def test_mitigation_respects_the_sanitization_budget(tmp_path):
    p = _quick_trial(tmp_path, "mitigation")
    proto = Mitigation(removal=THRESHOLD_2, max_removal_fraction=1.5 / len(p.train.labels))  # at most 1
    state = proto.setup(p, numpy_rng(0))
    result = proto.evaluate(p, state, build_method(MethodSpec("GAS", "gas")), numpy_rng(1))
    assert result.extra["n_removed"] <= 1
    assert result.extra["human_review"] is True  # stopped and flagged instead of deleting more
    assert result.metrics["attack_success_rate"] == 1.0


def test_target_identification_ranks_targets_first(tmp_path):
    p = _quick_trial(tmp_path, "target-identification")
    ti = TargetIdentification(n_targets=3, n_non_targets=30)
    state = ti.setup(p, numpy_rng(0))
    assert state.is_target.sum() == 3 and (~state.is_target).sum() == 30
    # kappa below |D_adv| = 8 (paper 000 Sec. 5.2: attacks smaller than kappa are hard to detect)
    fit = ti.evaluate(p, state, build_method(MethodSpec("F", "fit", "target_rankers",
                                                                           {"estimator": "gas", "kappa": 3})),
                                         numpy_rng(1))
    assert fit.metrics["target_rank"] == 1.0 and fit.metrics["auprc"] > 0.9
    rnd = ti.evaluate(p, state, build_method(MethodSpec("R", "random", "target_rankers")),
                                         numpy_rng(1))
    assert rnd.metrics["auprc"] < fit.metrics["auprc"]


class _ClusterOracle(Defense):
    """Knows the planted cluster: scores it highest."""

    Config = NoParams
    requires = frozenset({"queries"})

    def score(self, evidence):
        x = evidence.train_inputs
        return (-(x - torch.tensor([0.0, 3.0])).norm(dim=1)).numpy()[:, None]


def _filtering_toy() -> PreparedTrial:
    """Two blobs, and a small class-1 cluster at (0, 3) that alone supports the test point there."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(60, 2, generator=g) * 0.5 + torch.tensor([-2.0, -1.0])
    x1 = torch.randn(60, 2, generator=g) * 0.5 + torch.tensor([2.0, -1.0])
    cluster = torch.randn(8, 2, generator=g) * 0.2 + torch.tensor([0.0, 3.0])
    far0 = torch.randn(12, 2, generator=g) * 0.3 + torch.tensor([-1.5, 3.0])
    x = torch.cat([x0, x1, cluster, far0])
    y = torch.cat([torch.zeros(60), torch.ones(60), torch.ones(8), torch.zeros(12)]).long()
    test_x = torch.tensor([[0.3, 3.0], [-2.0, -1.0], [2.0, -1.0]])
    test_y = torch.tensor([1, 0, 1])
    attacked = AttackedData(train=Split(x, y), is_adv=torch.zeros(len(y), dtype=torch.bool),
                            test=Split(test_x, test_y), targets=Split(test_x[:0], test_y[:0]),
                            y_adv=test_y[:0], non_targets=Split(test_x, test_y), num_classes=2,
                            classes=["a", "b"], modality="features")
    factory = make_model_factory({"name": "mlp", "params": {"hidden": 16}}, (2,), 1)
    cfg = TrainConfig(epochs=30, batch_size=16, lr=0.05, checkpoints_per_epoch=1)
    torch.manual_seed(0)
    run = train(factory(), x, y, cfg, generator=torch.Generator().manual_seed(0))
    from benchmark.experiment import TrialConfig

    tc = TrialConfig("toy", "smoke", 0, 123, {})
    f = Featurized
    return PreparedTrial(tc, attacked, f(x, y), f(test_x, test_y), f(test_x[:0], test_y[:0]), None,
                         f(test_x, test_y), factory, run, {})


def test_filtering_finds_the_supporting_cluster():
    p = _filtering_toy()
    assert p.predict(p.test.inputs[:1]).item() == 1
    proto = Filtering(removals=[{"name": "top-percent", "params": {"percent": 6.0}}], n_retrain=6,
                      n_selection_models=4, mis_rate_low=0.0, mis_rate_high=0.5)
    state = proto.setup(p, numpy_rng(0))
    assert state is not None and state.index == 0  # the only test point not always right
    oracle = proto.evaluate(p, state, _ClusterOracle(), numpy_rng(1))
    control = proto.evaluate(p, state, build_method(MethodSpec("R", "random")), numpy_rng(1))
    assert oracle.metrics["misclassification_rate@6%"] >= 0.8
    assert control.metrics["misclassification_rate@6%"] < oracle.metrics["misclassification_rate@6%"]


def test_filtering_without_eligible_example_is_not_evaluated():
    p = _filtering_toy()
    proto = Filtering(n_retrain=1, n_selection_models=2, mis_rate_low=0.9, mis_rate_high=1.0)
    assert proto.setup(p, numpy_rng(0)) is None


def test_filtering_probe_widens_the_selection_window_and_keeps_the_rules():
    """The full-scale probe failed at 000-fig4 because its few-step model left no test example in
    the 10-20 % window; the probe's protocol takes any rate and one model, with the same rules."""
    p = _filtering_toy()
    proto = Filtering(removals=[{"name": "top-percent", "params": {"percent": 6.0}}], n_retrain=3,
                      n_selection_models=2, mis_rate_low=0.9, mis_rate_high=1.0)
    probe = proto.for_probe()
    assert proto.setup(p, numpy_rng(0)) is None
    assert (probe.params.mis_rate_low, probe.params.mis_rate_high) == (0.0, 1.0)
    assert probe.params.n_selection_models == probe.params.n_retrain == 1
    assert [r.describe() for r in probe.rules] == [r.describe() for r in proto.rules]
    state = probe.setup(p, numpy_rng(0))
    assert state is not None
    res = probe.evaluate(p, state, build_method(MethodSpec("R", "random")), numpy_rng(1))
    assert set(res.metrics) == {"misclassification_rate@6%"}
    assert proto.params.mis_rate_low == 0.9  # the configured protocol is untouched
    tid = TargetIdentification()
    assert tid.for_probe() is tid  # no data-dependent selection: probed as configured


def test_protocol_params_validate():
    with pytest.raises(ConfigError, match="target_source"):
        Mitigation(target_source="oracle")
    with pytest.raises(ConfigError, match="percent"):
        Filtering(removals=[{"name": "top-percent", "params": {"percent": 120}}])
    with pytest.raises(ConfigError, match="unknown config key"):
        Filtering(percents=(5,))
    with pytest.raises(ConfigError):
        TargetIdentification(n_targets=0)
    with pytest.raises(ConfigError, match="true label"):
        Mitigation(target_source="ranker")  # the stop test needs the true label
    with pytest.raises(ConfigError, match="zeta"):
        Mitigation(removal={"name": "top-k", "params": {"k": 3}}, anneal=0.5)


def test_protocols_are_registered_classes():
    assert protocols.get("mitigation") is Mitigation
    assert protocols.get("filtering") is Filtering


def test_fit_variants_share_one_influence_computation(tmp_path, monkeypatch):
    p = _quick_trial(tmp_path, "target-identification")
    ti = TargetIdentification(n_targets=2, n_non_targets=10)
    state = ti.setup(p, numpy_rng(0))
    calls = {"n": 0}
    from defenses.influence.tracin import GAS

    real = GAS.score

    def counting(self, ev):
        calls["n"] += 1
        return real(self, ev)

    monkeypatch.setattr(GAS, "score", counting)
    tails = []
    for kappa in (1, 3):
        ranker = build_method(MethodSpec("F", "fit", "target_rankers", {"estimator": "gas", "kappa": kappa}))
        ti.evaluate(p, state, ranker, numpy_rng(1))
        tails.append(ranker.details["tail_heaviness"])
    assert calls["n"] == 1
    assert not np.allclose(tails[0], tails[1])  # same influence, different kappa


# -- Alg. 3 details (issue 8, items 3 and 7) ---------------------------------------------------

def test_mitigation_anneals_zeta_after_every_retraining_round(tmp_path):
    """Alg. 3 line 8 anneals after every round; the old rule ("when_empty") only when a round
    removed nothing."""
    p = _quick_trial(tmp_path, "mitigation")
    gas = build_method(MethodSpec("GAS", "gas"))
    out = {}
    for rule in ("every_round", "when_empty"):
        proto = Mitigation(removal=THRESHOLD_2, anneal=0.5, min_zeta=0.1, anneal_rule=rule)
        out[rule] = proto.evaluate(p, proto.setup(p, numpy_rng(0)), gas, numpy_rng(1))
    every = out["every_round"]
    rounds = int(every.metrics["retrain_rounds"])
    assert rounds >= 1 and every.extra["human_review"] is False
    assert every.extra["final_zeta"] == pytest.approx(2.0 * 0.5 ** rounds)
    assert out["when_empty"].extra["final_zeta"] == pytest.approx(2.0)  # nothing was ever empty


def _fake_trial(predictions):
    return types.SimpleNamespace(predict=lambda x, params=None: torch.as_tensor(predictions))


def test_mitigation_stop_test_is_all_targets_correct():
    """Footnote 14: stop once all targets are classified correctly -- not merely once none is
    predicted y_adv (a target moved to a third class is still misclassified)."""
    from benchmark.protocols.mitigation import State

    state = State(torch.zeros(2, 1), torch.tensor([2, 2]), torch.tensor([0, 1]), np.array([0, 1]), True)
    run = types.SimpleNamespace(final=None)
    paper, old = Mitigation(), Mitigation(stop="label_changed")
    assert paper._stopped(_fake_trial([0, 1]), run, state)
    assert not paper._stopped(_fake_trial([0, 0]), run, state)  # target 1 in a third class
    assert old._stopped(_fake_trial([0, 0]), run, state)
    assert not old._stopped(_fake_trial([0, 2]), run, state)


class _ConstantRanker(TargetRanker):
    """Every candidate ties."""

    Config = NoParams

    def rank(self, evidence):
        return np.zeros(len(evidence.queries()[1]))


if "test-constant" not in target_rankers:
    target_rankers.add("test-constant", _ConstantRanker, "ties everywhere (tests)")


def test_ranker_ties_are_broken_by_the_trial_rng_not_in_favour_of_targets(tmp_path):
    p = _quick_trial(tmp_path, "mitigation")
    proto = Mitigation(target_source="ranker", stop="label_changed", ranker={"name": "test-constant"},
                       ranker_non_targets=20)
    states = [proto.setup(p, numpy_rng(seed)) for seed in range(20)]
    picks = [s.identified_correctly for s in states]
    assert sum(picks) <= 5  # 1 target among 21 tied candidates: rarely picked (it was always picked)
    assert all(s.target_rank == 1.0 for s in states)  # recorded: tied with the top, the target ranks 1
    fit = Mitigation(target_source="ranker", stop="label_changed", ranker_non_targets=20).setup(p, numpy_rng(0))
    assert fit.target_rank >= 1.0 and fit.identified_correctly == (fit.target_rank == 1.0)


def test_if_variants_share_one_exact_hessian(tmp_path, monkeypatch):
    """if, if-renorm and if-l of one trial share the exact damped inverse Hessian (trial memo)."""
    import defenses.influence.influence_functions as IF
    from benchmark.protocols.adversarial_set import AdversarialSet

    p = _quick_trial(tmp_path, "inverted-digit")
    calls = _count_calls(monkeypatch, IF, "build_preconditioner")
    proto = AdversarialSet()
    state = proto.setup(p, numpy_rng(0))
    for name in ("if", "if-renorm", "if-l"):
        proto.evaluate(p, state, build_method(MethodSpec(name, name, params={"layers": "all"})), numpy_rng(1))
    assert calls["n"] == 1


def _adv_oracle(is_adv):
    class AdvOracle(Defense):
        """Knows D_adv (a test double): scores it highest."""
        Config = NoParams
        requires = frozenset({"model"})

        def score(self, evidence):
            return is_adv.astype(float)
    return AdvOracle()


def test_remove_and_retrain_removes_1p5_eps_n_and_measures_the_retrained_model(tmp_path):
    from benchmark.protocols.remove_and_retrain import RemoveAndRetrain

    p = _quick_trial(tmp_path, "mitigation")
    proto = RemoveAndRetrain()
    state = proto.setup(p, numpy_rng(0))
    n_adv, n = int(p.is_adv.sum()), len(p.is_adv)
    oracle = proto.evaluate(p, state, _adv_oracle(p.is_adv), numpy_rng(1))
    m = oracle.metrics
    assert oracle.extra["n_removed"] == int(1.5 * n_adv)  # paper 001 Sec. 4.1: 1.5 eps N
    assert m["pct_adv_removed"] == 100.0 and m["auprc"] == 1.0
    assert m["pct_clean_removed"] == pytest.approx(100.0 * (int(1.5 * n_adv) - n_adv) / (n - n_adv))
    assert m["attack_success_rate"] < p.trial_metrics["asr_no_defense"]  # the backdoor is gone
    none = proto.evaluate(p, state, build_method(MethodSpec("no defense", "none")), numpy_rng(1))
    assert none.metrics["attack_success_rate"] == p.trial_metrics["asr_no_defense"]
    assert none.metrics["pct_adv_removed"] == 0.0 and none.scores is None
    # a per-query method gets the protocol's one target; every method retrains with the same seed
    gas = proto.evaluate(p, state, build_method(MethodSpec("GAS", "gas")), numpy_rng(1))
    assert "queries" in gas.granted and 0 <= gas.metrics["auprc"] <= 1
    rnd = proto.evaluate(p, state, build_method(MethodSpec("R", "random")), numpy_rng(1))
    assert rnd.metrics["pct_adv_removed"] < m["pct_adv_removed"]


def test_remove_and_retrain_trains_once_for_two_methods_removing_the_same_set(tmp_path, monkeypatch):
    """COSIN and GAS score identically, so they remove the same set: the second reuses the first's
    retrained model (same kept set, theta_0 and seed), with the metrics a fresh retrain gives."""
    from benchmark.protocols import remove_and_retrain as rr

    p = _quick_trial(tmp_path, "mitigation")
    calls = _count_calls(monkeypatch, rr, "retrain")
    proto = rr.RemoveAndRetrain()
    state = proto.setup(p, numpy_rng(0))
    gas = proto.evaluate(p, state, build_method(MethodSpec("GAS", "gas")), numpy_rng(1))
    cosin = proto.evaluate(p, state, build_method(MethodSpec("COSIN", "cosin")), numpy_rng(1))
    assert calls["n"] == 1 and cosin.extra["retrains_reused"] == 1 and gas.extra["retrains_reused"] == 0
    assert cosin.metrics == gas.metrics
    p.memo.clear()  # a fresh retrain gives the same numbers
    again = proto.evaluate(p, state, build_method(MethodSpec("COSIN", "cosin")), numpy_rng(1))
    assert calls["n"] == 2 and again.metrics == cosin.metrics
    rnd = proto.evaluate(p, state, build_method(MethodSpec("R", "random")), numpy_rng(1))
    assert calls["n"] == 3 and rnd.extra["retrains_reused"] == 0


def test_mitigation_first_round_of_the_methods_of_a_trial_shares_one_engine_pass(tmp_path, monkeypatch):
    """Before any removal every method scores the trial's own training tensors, so GAS-L's first
    round reads the pass GAS's first round made (issue 14 item 8), with the numbers it gets alone."""
    from benchmark.api.evidence import TRIAL_METHODS
    from defenses.influence import tracin

    p = _quick_trial(tmp_path, "mitigation")
    gas, gas_l = build_method(MethodSpec("GAS", "gas")), build_method(MethodSpec("GAS-L", "gas-l"))
    calls = _count_calls(monkeypatch, tracin, "score_matrices")
    proto = Mitigation(removal=THRESHOLD_2, max_removal_fraction=0.05, max_rounds=1, control=None)
    p.memo[TRIAL_METHODS] = (gas, gas_l)
    state = proto.setup(p, numpy_rng(0))
    proto.evaluate(p, state, gas, numpy_rng(1))
    shared = proto.evaluate(p, state, gas_l, numpy_rng(1))
    assert calls["n"] == 1  # one round each, one pass
    p.memo.clear()
    alone = proto.evaluate(p, state, gas_l, numpy_rng(1))
    assert calls["n"] == 2
    assert shared.metrics == alone.metrics and np.array_equal(shared.scores, alone.scores)
