"""FIT (paper 000 Alg. 2 / suppl. Alg. 6): anomaly scores, tail heaviness, per-class statistics,
two-phase "faster FIT", and an end-to-end run with the registered `gas` defense on a tiny
trained model with a planted attack."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from benchmark.config import ConfigError
from benchmark.models import build_model
from benchmark.registry import RegistryError, defenses, target_rankers
from benchmark.rng import numpy_rng, torch_rng
from benchmark.training import Checkpoint, TrainConfig, TrainingRun, predict, predict_logits, train
from benchmark.api import Defense, Evidence
from baselines.fit import (
    FIT,
    final_checkpoint_view,
    rank_within_classes,
    tail_heaviness,
    tail_heaviness_matrix,
)
from benchmark.anomaly import anomaly_scores
from benchmark.robust_scale import QN_CONSTANT


def naive_qn(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    i, j = np.triu_indices(len(x), 1)
    h = len(x) // 2 + 1
    return QN_CONSTANT * float(np.sort(np.abs(x[i] - x[j]))[h * (h - 1) // 2 - 1])


# -- a planted influence estimator, registered under a unique name for the tests -------------

@dataclass
class _PlantedCfg:
    pass


class PlantedInfluence(Defense):
    """Returns planted columns of ``evidence.extras['full']`` -- or of ``extras['phase1']`` when
    it is shown the one-checkpoint final-parameter view -- for the query ids stored in the
    queries' first input feature; records every call in ``extras['calls']``."""

    Config = _PlantedCfg
    requires = frozenset({"checkpoints", "queries"})

    def score(self, evidence: Evidence) -> np.ndarray:
        run = evidence.run()
        qx, _ = evidence.queries()
        ids = qx[:, 0].long().numpy()
        final_view = (len(run.checkpoints) == 1 and run.checkpoints[0].lr == 1.0
                      and run.checkpoints[0].params is run.final)
        evidence.extras.setdefault("calls", []).append((final_view, ids.copy(), run))
        matrix = evidence.extras["phase1" if final_view else "full"]
        return matrix[:, ids]


class NotPerQuery(Defense):
    """A defense that scores the training set without queries."""

    Config = _PlantedCfg
    requires = frozenset({"model"})

    def score(self, evidence: Evidence) -> np.ndarray:  # pragma: no cover - never called
        return np.zeros(len(evidence.train_labels))


PLANTED = "test-fit-planted-influence-7f3a"
NOT_PER_QUERY = "test-fit-not-per-query-7f3a"


@pytest.fixture(scope="module", autouse=True)
def planted_estimators():
    defenses.add(PLANTED, PlantedInfluence, "test only")
    defenses.add(NOT_PER_QUERY, NotPerQuery, "test only")
    yield
    for name in (PLANTED, NOT_PER_QUERY):  # leave the global registry as we found it
        defenses._entries.pop(name, None)


def fake_run(n_train: int, n_ckpts: int = 3) -> TrainingRun:
    ckpts = [Checkpoint(iteration=10 * k, params={"w": torch.full((1,), float(k))}, lr=0.1,
                        batch_size=4, example_ids=torch.arange(n_train)) for k in range(n_ckpts)]
    return TrainingRun(config=TrainConfig(), n_train=n_train, theta0={"w": torch.zeros(1)},
                       checkpoints=ckpts, final={"w": torch.ones(1)}, total_iterations=10 * n_ckpts)


def planted_evidence(full: np.ndarray, train_labels, query_labels, phase1=None) -> Evidence:
    n_train, n_q = full.shape
    ev = Evidence(train_inputs=torch.zeros(n_train, 1), train_labels=torch.as_tensor(train_labels),
                  num_classes=int(max(train_labels)) + 1, rng=numpy_rng("fit-test"),
                  granted=frozenset({"checkpoints", "queries"}), training_run=fake_run(n_train),
                  query_inputs=torch.arange(n_q, dtype=torch.float32)[:, None],
                  query_labels=torch.as_tensor(query_labels))
    ev.extras["full"] = full
    ev.extras["phase1"] = full if phase1 is None else phase1
    return ev


# -- pure functions ---------------------------------------------------------------------------

def test_anomaly_scores_use_the_predicted_class_statistics():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [40, 50, 30])
    v = np.concatenate([rng.normal(0, 1, 40), rng.normal(50, 10, 50), rng.normal(-5, 3, 30)])
    for c in (0, 1, 2):
        group = v[labels == c]
        expect = (v - np.median(group)) / naive_qn(group)
        np.testing.assert_allclose(anomaly_scores(v, labels, c), expect, rtol=1e-12)
    expect_all = (v - np.median(v)) / naive_qn(v)
    np.testing.assert_allclose(anomaly_scores(v, labels, 1, per_class=False), expect_all, rtol=1e-12)
    # the class-1 statistics really differ from the others: its centre maps to ~0
    assert abs(anomaly_scores(v, labels, 1)[labels == 1].mean()) < 0.5
    assert anomaly_scores(v, labels, 0)[labels == 1].min() > 10
    with pytest.raises(ValueError, match="per_class_stats=False"):
        anomaly_scores(v, labels, 7)


def test_tail_heaviness_is_the_kappa_th_largest_score():
    sigma = np.array([0.3, 9.0, -1.0, 4.0, 4.0, 7.5, 2.0])
    ordered = np.sort(sigma)[::-1]
    for kappa in range(1, len(sigma) + 1):
        assert tail_heaviness(sigma, kappa) == ordered[kappa - 1]
    with pytest.raises(ValueError, match="kappa"):
        tail_heaviness(sigma, 0)
    with pytest.raises(ValueError, match="kappa"):
        tail_heaviness(sigma, 8)


def test_zero_scale_convention():
    labels = np.zeros(9, dtype=int)
    v = np.array([0, 0, 0, 0, 0, 0, 1.0, -2.0, 3.0])  # > half tied: Q_n = 0
    sigma = anomaly_scores(v, labels, 0)
    assert list(sigma) == [0.0] * 6 + [np.inf, -np.inf, np.inf]


def test_matrix_version_equals_per_column_pure_functions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=150)
    preds = rng.integers(0, 3, size=12)
    V = rng.standard_t(3, size=(150, 12))
    for per_class, kappa in itertools.product((True, False), (1, 4, 10)):
        got = tail_heaviness_matrix(V, labels, preds, kappa, per_class)
        want = [tail_heaviness(anomaly_scores(V[:, j], labels, preds[j], per_class), kappa)
                for j in range(12)]
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_rank_within_classes_standardizes_per_predicted_class():
    scores = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0])
    preds = np.array([0, 0, 0, 1, 1, 1, 1])
    out = rank_within_classes(scores, preds)
    for c in (0, 1):
        s = scores[preds == c]
        np.testing.assert_allclose(out[preds == c], (s - np.median(s)) / naive_qn(s))


# -- FIT on planted influence -----------------------------------------------------------------

def planted_kappa_matrix(seed: int = 2):
    """200 training examples, 6 candidates of N(0,1) influence; candidate 2 gets 10 planted
    outliers of 8, candidate 4 gets 3 planted outliers of 30."""
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(200, 6))
    V[rng.choice(200, 10, replace=False), 2] = 8.0
    V[rng.choice(200, 3, replace=False), 4] = 30.0
    return V


def test_kappa_planted_outliers_rank_first_and_kappa_matters():
    V = planted_kappa_matrix()
    labels = np.zeros(200, dtype=int)
    preds = np.zeros(6, dtype=int)
    ev = planted_evidence(V, labels, preds)
    s10 = FIT(estimator=PLANTED, kappa=10)(ev)
    assert np.argmax(s10) == 2  # kappa = 10 planted outliers: ranks first
    assert s10[2] > 5 and s10[4] < 2  # only 3 outliers: its 10th largest is an ordinary value
    assert np.argsort(-s10).tolist().index(4) > 0
    s3 = FIT(estimator=PLANTED, kappa=3)(ev)
    assert np.argmax(s3) == 4  # with kappa = 3 the three extreme outliers dominate
    assert s3[4] > s3[2] > 5
    s11 = FIT(estimator=PLANTED, kappa=11)(ev)
    assert s11[2] < 3  # kappa above the attack size: the attack no longer shows


def test_per_class_statistics_change_the_ranking():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 100)
    V = rng.normal(size=(200, 4))
    V[labels == 1, 1] *= 0.1  # candidate 1 (predicted 1): tight influence on its class
    V[:10, 0] = 20.0  # candidate 0 (predicted 0): 10 outliers of 20 among class-0 examples
    V[100:110, 1] = 4.0  # candidate 1: 10 outliers of 4 among class-1 examples
    preds = np.array([0, 1, 0, 1])
    ev = planted_evidence(V, labels, preds)
    per_class = FIT(estimator=PLANTED, kappa=10)(ev)
    pooled = FIT(estimator=PLANTED, kappa=10, per_class_stats=False)(ev)
    assert np.argmax(per_class) == 1  # 4 is ~40 class-1 scales above its median
    assert np.argmax(pooled) == 0  # pooled over both classes candidate 1's scale is ~0.5
    # the per-class tail used exactly the class-1 rows for candidate 1
    g = V[labels == 1, 1]
    kth = np.sort(V[:, 1])[-10]
    assert per_class[1] == pytest.approx((kth - np.median(g)) / naive_qn(g), rel=1e-12)


def test_two_phase_uses_final_view_then_recomputes_top_fraction():
    rng = np.random.default_rng(4)
    n_q = 20
    full = rng.normal(size=(300, n_q))
    phase1 = rng.normal(size=(300, n_q))
    phase1[:1, 5] = 50.0  # one huge outlier: kappa_phase1 = 1 picks candidates 5 and 9 ...
    phase1[:1, 9] = 40.0
    full[:10, 9] = 12.0  # ... and the full run confirms candidate 9
    full[:10, 13] = 20.0  # candidate 13 would win phase 2 but phase 1 never picks it
    ev = planted_evidence(full, np.zeros(300, dtype=int), np.zeros(n_q, dtype=int), phase1)
    fit = FIT(estimator=PLANTED, two_phase=True, phase2_fraction=0.1)
    scores = fit(ev)
    calls = ev.extras["calls"]
    assert [c[0] for c in calls] == [True, False]  # phase 1 on the final view, phase 2 full
    p1_run = calls[0][2]
    assert len(p1_run.checkpoints) == 1 and p1_run.checkpoints[0].lr == 1.0
    assert p1_run.checkpoints[0].params is p1_run.final
    assert torch.equal(p1_run.checkpoints[0].example_ids, torch.arange(300))
    np.testing.assert_array_equal(calls[0][1], np.arange(n_q))
    np.testing.assert_array_equal(calls[1][1], [5, 9])  # ceil(10% of 20) = 2 candidates
    order = np.argsort(-scores, kind="stable")
    assert order[:2].tolist() == [9, 5]
    assert set(order[2:]) == set(range(n_q)) - {5, 9}
    p1 = fit.details["phase1_tail_heaviness"]
    rest = np.array(sorted(set(range(n_q)) - {5, 9}))
    # the others keep their phase-1 order
    assert np.array_equal(np.argsort(-scores[rest], kind="stable"), np.argsort(-p1[rest], kind="stable"))
    # phase-2 candidates keep their phase-2 tail values
    single = FIT(estimator=PLANTED, kappa=10)(planted_evidence(full, np.zeros(300, int), np.zeros(n_q, int)))
    np.testing.assert_allclose(scores[[5, 9]], single[[5, 9]], rtol=1e-12)


def test_two_phase_with_everything_in_phase_two_equals_one_phase_planted():
    V = planted_kappa_matrix(5)
    labels = np.repeat([0, 1], 100)
    preds = np.array([0, 1, 1, 0, 1, 0])
    one = FIT(estimator=PLANTED)(planted_evidence(V, labels, preds))
    two = FIT(estimator=PLANTED, two_phase=True, phase2_fraction=1.0, phase1_checkpoints="all")(
        planted_evidence(V, labels, preds, phase1=V * 0.0 + 1.0))
    np.testing.assert_array_equal(one, two)


# -- configuration and registry ---------------------------------------------------------------

def test_config_and_estimator_lookup_errors():
    with pytest.raises(ConfigError, match="unknown config key"):
        FIT(estimater="gas")
    with pytest.raises(RegistryError, match="unknown defenses"):
        FIT(estimator="no-such-estimator")
    with pytest.raises(ConfigError, match="unknown config key"):
        FIT(estimator="gas", estimator_params={"bogus": 1})
    with pytest.raises(ConfigError, match="per-query"):
        FIT(estimator=NOT_PER_QUERY)
    with pytest.raises(ConfigError, match="phase2_fraction"):
        FIT(phase2_fraction=0.0)
    with pytest.raises(ConfigError, match="kappa"):
        FIT(kappa=0)
    fit = FIT(estimator="gas", estimator_params={}, kappa=10)
    assert fit.requires == frozenset({"checkpoints", "queries"})


def test_fit_is_registered():
    assert target_rankers.get("fit") is FIT
    assert target_rankers.entry("fit").description


# -- end to end: a tiny trained model, the registered `gas` defense, a planted attack ---------

@pytest.fixture(scope="module")
def poisoned_setup():
    """Binary 2-D task (class 0 around (-2,0), class 1 around (2,0)); 12 adversarial training
    points around (3,4), far from everything, labelled 0.  The target sits at (3,4)."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n_cl, n_adv = 60, 12
    x0 = torch.randn(n_cl, 2, generator=g) * 0.5 + torch.tensor([-2.0, 0.0])
    x1 = torch.randn(n_cl, 2, generator=g) * 0.5 + torch.tensor([2.0, 0.0])
    xa = torch.randn(n_adv, 2, generator=g) * 0.3 + torch.tensor([3.0, 4.0])
    X = torch.cat([x0, x1, xa])
    Y = torch.cat([torch.zeros(n_cl), torch.ones(n_cl), torch.zeros(n_adv)]).long()
    cfg = TrainConfig(epochs=30, batch_size=16, lr=1e-2, checkpoints_per_epoch=1, schedule="constant")

    def factory():
        return build_model("mlp", (2,), 1, {"hidden": 16})

    torch.manual_seed(0)
    model = factory()
    run = train(model, X, Y, cfg, torch_rng("fit-e2e"))
    torch.manual_seed(0)
    clean_model = factory()
    train(clean_model, X[: 2 * n_cl], Y[: 2 * n_cl], cfg, torch_rng("fit-e2e"))
    target = torch.tensor([[3.0, 4.0]])
    clean_q = torch.cat([torch.randn(15, 2, generator=g) * 0.5 + torch.tensor([-2.0, 0.0]),
                         torch.randn(15, 2, generator=g) * 0.5 + torch.tensor([2.0, 0.0])])
    queries = torch.cat([clean_q[:7], target, clean_q[7:]])  # the target is query 7
    preds = predict(predict_logits(model, queries))
    ev = Evidence(train_inputs=X, train_labels=Y, num_classes=2, rng=numpy_rng("fit-e2e"),
                  granted=frozenset({"checkpoints", "queries"}), model_factory=factory,
                  training_run=run, query_inputs=queries, query_labels=preds)
    return ev, int(predict(predict_logits(clean_model, target))[0])


def test_end_to_end_gas_fit_ranks_the_target_first(poisoned_setup):
    ev, clean_prediction = poisoned_setup
    assert clean_prediction == 1  # without the attack the target is class 1 ...
    assert int(ev.query_labels[7]) == 0  # ... the poisoned model predicts y_adv = 0
    scores = FIT(estimator="gas", kappa=10)(ev)
    assert np.argmax(scores) == 7
    others = np.delete(scores, 7)
    assert scores[7] > 3 * others.max()
    # the same holds for the registered entry, the within-class option and faster FIT
    assert np.argmax(target_rankers.get("fit")(estimator="gas")(ev)) == 7
    assert np.argmax(FIT(estimator="gas", rank_within_class=True)(ev)) == 7
    assert np.argmax(FIT(estimator="gas", two_phase=True)(ev)) == 7


def test_end_to_end_two_phase_all_in_phase_two_equals_one_phase(poisoned_setup):
    ev, _ = poisoned_setup
    one = FIT(estimator="gas", kappa=10)(ev)
    two = FIT(estimator="gas", kappa=10, two_phase=True, phase2_fraction=1.0,
              phase1_checkpoints="all")(ev)
    np.testing.assert_array_equal(one, two)


def test_final_checkpoint_view_leaves_the_run_untouched(poisoned_setup):
    ev, _ = poisoned_setup
    run = ev.training_run
    n_ckpts = len(run.checkpoints)
    view = final_checkpoint_view(run)
    assert len(run.checkpoints) == n_ckpts > 1
    assert len(view.checkpoints) == 1 and view.checkpoints[0].params is run.final
    assert dataclasses.replace(view, checkpoints=run.checkpoints).checkpoints is run.checkpoints


# -- degenerate scale: Q_n = 0 (issue 8, item 4) ------------------------------------------------

def _degenerate_matrix() -> np.ndarray:
    """200 training examples; most influence values are exactly 0, so Q_n = 0 for candidates 0-2.
    Candidates 0 and 1 have 12 / 5 positive outliers (+inf tails, 0 has the larger excess), 2 has
    negative ones (-inf tail if kappa exceeds them), 3-5 are ordinary noise."""
    rng = np.random.default_rng(0)
    V = np.zeros((200, 6))
    V[:12, 0] = 5.0
    V[:12, 1] = 2.0
    V[:12, 2] = -3.0
    V[:, 3:] = rng.normal(size=(200, 3))
    return V


def test_infinite_tails_are_ranked_not_fatal_end_to_end():
    from benchmark.metrics import auprc, target_rank

    ev = planted_evidence(_degenerate_matrix(), np.zeros(200, dtype=int), np.zeros(6, dtype=int))
    fit = FIT(estimator=PLANTED, kappa=10)
    scores = fit(ev)
    assert np.all(np.isfinite(scores))  # before: +-inf, and AUPRC refused the trial
    assert np.isinf(fit.details["tail_heaviness"][:2]).all()
    order = np.argsort(-scores, kind="stable").tolist()
    assert order[:2] == [0, 1]  # both +inf; the larger unscaled excess first
    assert order[-1] == 2  # its kappa-th largest is the median: 0, below the noise tails
    is_target = np.array([True, False, False, False, False, False])
    assert auprc(is_target, scores) == 1.0 and target_rank(is_target, scores) == 1.0
    # two-phase FIT takes the same path
    two = FIT(estimator=PLANTED, kappa=10, two_phase=True, phase1_kappa=1, phase2_fraction=0.5)(ev)
    assert np.all(np.isfinite(two)) and np.argmax(two) == 0
