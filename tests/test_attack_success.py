"""One attack-success definition everywhere (issue 8, item 5): a target counts only if the
attacked model classifies its clean version correctly."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.api import AttackedData
from benchmark.data.types import Split
from benchmark.experiment import TrialConfig
from benchmark.protocols.attack_success import AttackSuccess
from benchmark.protocols.mitigation import Mitigation
from benchmark.report import render_attack_table
from benchmark.rng import numpy_rng
from benchmark.store import MetricValue, Record
from benchmark.training import TrainConfig, TrainingRun
from benchmark.trial import Featurized, PreparedTrial, _attack_facts


def _sign_model() -> nn.Module:
    m = nn.Linear(1, 1)
    with torch.no_grad():
        m.weight.fill_(1.0)
        m.bias.zero_()
    return m  # one logit: predicts 1 for x > 0


def _trial() -> PreparedTrial:
    """Targets (true label 0, adversarial label 1): A flips, B does not, C is misclassified even
    without the trigger (not eligible)."""
    f = lambda v: torch.tensor(v, dtype=torch.float32)[:, None]  # noqa: E731
    triggered, clean = f([1.0, -1.0, 1.0]), f([-1.0, -1.0, 1.0])
    y_targ, y_adv = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    test = Split(f([-2.0, 2.0]), torch.tensor([0, 1]))
    attacked = AttackedData(train=test, is_adv=torch.zeros(2, dtype=torch.bool), test=test,
                            targets=Split(triggered, y_targ), y_adv=y_adv, non_targets=test, num_classes=2,
                            classes=["a", "b"], targets_clean=Split(clean, y_targ), modality="features")
    state = _sign_model().state_dict()
    run = TrainingRun(TrainConfig(), 2, state, [], state, 0)
    F = Featurized
    p = PreparedTrial(TrialConfig("toy", "smoke", 0, 1, {}), attacked, F(test.inputs, test.labels),
                      F(test.inputs, test.labels), F(triggered, y_targ), F(clean, y_targ),
                      F(test.inputs, test.labels), _sign_model, run, {})
    _attack_facts(p)
    return p


def test_ineligible_targets_leave_numerator_and_denominator():
    p = _trial()
    assert p.eligible_targets.tolist() == [True, True, False]
    assert p.successful_targets.tolist() == [0]
    assert p.attack_success() == (1, 2)
    assert p.trial_metrics["asr_no_defense"] == 0.5  # was 2/3: C counted as a success
    res = AttackSuccess().evaluate(p, {}, None, numpy_rng(0))
    assert res.metrics["asr_no_defense"] == 0.5 and res.extra["asr_counts"] == [1, 2]


def test_mitigation_reports_asr_over_the_same_eligible_targets():
    p = _trial()
    out = Mitigation()._outcome(p, p.run, np.zeros(2, dtype=bool), _state(p), prefix="")
    assert out["asr_all_targets"] == 0.5


def _state(p):
    from benchmark.protocols.mitigation import State

    x = p.targets.inputs[:1]
    return State(x, torch.ones(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), np.array([0]), True)


def _record(trial: int, hits: int, n: int) -> Record:
    return Record(suite="s", suite_version=1, experiment="e", scale="small", trial=trial, seed=trial, config={},
                  config_hash="h", data_fingerprint="d", protocol="attack-success", method="none",
                  method_kind="defenses", method_name="none", method_params={}, method_hash="m", granted=[],
                  oracle=[], metrics={"asr_no_defense": MetricValue(hits / n, True),
                                      "clean_accuracy": MetricValue(0.9, True)},
                  trial_metrics={}, score_hash=None, wall_time_s=0.0,
                  extra={"asr_counts": [hits, n], "clean_counts": [90, 100], "poison_ratio": 0.01,
                         "training_wall_time_s": 1.0})


def test_attack_table_is_a_t_interval_over_trials_with_pooled_counts():
    table = render_attack_table([_record(0, 80, 100), _record(1, 90, 100), _record(2, 100, 100)])
    # mean 0.9, std 0.1, n = 3: t(0.975, 2) = 4.303 -> half-width 0.248
    assert "0.900 [0.652, 1.148] (270/300)" in table
