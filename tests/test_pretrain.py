"""Pre-training on held-out classes (paper 000 Sec. 4.5, Fig. 4) and the ``clean-pair`` attack."""
import numpy as np
import pytest
import torch

from benchmark.experiment import Experiment
from benchmark.trial import prepare_trial
from benchmark.training.pretrain import PretrainConfig, held_out_index, load_backbone
from benchmark.models import build_model

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 1e-2, "checkpoints_per_epoch": 1}


def _exp(pretrain=None, classes=(0, 1)):
    cfg = {"dataset": {"name": "digits"}, "attack": {"name": "clean-pair", "params": {"classes": classes, "n_test": 40}},
           "model": {"name": "mlp", "params": {"hidden": 16}}, "train": TRAIN, "trials": 1,
           "protocol": {"name": "attack-success", "params": {}}}
    if pretrain is not None:
        cfg["pretrain"] = pretrain
    return Experiment("e", "", cfg, ())


def test_clean_pair_has_no_poison_and_no_target(tmp_path):
    p = prepare_trial(_exp().resolve("smoke", 0, 0), tmp_path, tmp_path)
    assert p.attacked.n_adv == 0 and len(p.targets.labels) == 0 and p.attacked.num_classes == 2
    assert set(p.train.labels.tolist()) == {0, 1} and len(p.test.labels) == 40
    assert p.trial_metrics["n_targets"] == 0 and np.isnan(p.trial_metrics["asr_no_defense"])


def test_theta0_is_the_pretrained_backbone_with_a_fresh_head(tmp_path):
    pre = {"classes": [2, 3, 4, 5], "n_per_class": 30}
    p = prepare_trial(_exp(pre).resolve("smoke", 0, 0), tmp_path, tmp_path)
    plain = prepare_trial(_exp().resolve("smoke", 0, 0), tmp_path / "b", tmp_path / "b")
    backbone = torch.load(next((tmp_path / "pretrain").glob("*.pt")), weights_only=True)
    head = [k for k, v in p.run.theta0.items() if backbone[k].shape != v.shape]
    assert head and all(k not in head for k in list(p.run.theta0)[:2])  # the output layer only
    for k, v in p.run.theta0.items():
        if k in head:
            assert torch.equal(v, plain.run.theta0[k])  # the victim's own initialisation
        else:
            assert torch.equal(v, backbone[k]) and not torch.equal(v, plain.run.theta0[k])
    # a second preparation reuses the cached pre-training (same theta_0, bit for bit)
    again = prepare_trial(_exp(pre).resolve("smoke", 0, 0), tmp_path, tmp_path)
    assert all(torch.equal(again.run.theta0[k], v) for k, v in p.run.theta0.items())
    # a changed pre-training setting trains another backbone (and another victim)
    other = prepare_trial(_exp({**pre, "n_per_class": 20}).resolve("smoke", 0, 0), tmp_path, tmp_path)
    assert len(list((tmp_path / "pretrain").glob("*.pt"))) == 2
    assert p.training_cache["key"] != other.training_cache["key"]


def test_pretraining_on_a_task_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="held-out classes only"):
        prepare_trial(_exp({"classes": [1, 2, 3]}).resolve("smoke", 0, 0), tmp_path, tmp_path)


def test_held_out_index_draws_per_class_and_relabels():
    labels = torch.tensor([0, 1, 2, 2, 1, 2, 0, 1])
    idx, lab = held_out_index(labels, PretrainConfig(classes=(2, 1), n_per_class=2), torch.Generator().manual_seed(0))
    assert idx.tolist() == sorted(idx.tolist()) and len(idx) == 4
    assert all(lab[i] == (0 if labels[j] == 2 else 1) for i, j in enumerate(idx.tolist()))
    with pytest.raises(ValueError, match="lower n_per_class"):
        held_out_index(labels, PretrainConfig(classes=(2, 1), n_per_class=4), torch.Generator())


def test_load_backbone_refuses_an_unrelated_network():
    a = build_model("mlp", (64,), 2, {"hidden": 16})
    b = build_model("mlp", (10,), 3, {"hidden": 7})
    with pytest.raises(ValueError, match="no parameter"):
        load_backbone(a, b.state_dict())
