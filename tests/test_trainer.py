import math

import pytest
import torch

from benchmark.models import build_model
from benchmark.training import TrainConfig, TrainingRun, train
from benchmark.training.trainer import checkpoint_iterations


def _data(n=40, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.3 * torch.randn(n, generator=g) > 0).long()
    return x, y


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", (5,), 1, {"hidden": 8, "depth": 1})


CFG = TrainConfig(epochs=3, batch_size=8, lr=0.05, checkpoints_per_epoch=2, schedule="onecycle")


def test_same_seed_gives_bit_identical_parameters():
    x, y = _data()
    runs = [train(_model(), x, y, CFG, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    for k in runs[0].final:
        assert torch.equal(runs[0].final[k], runs[1].final[k])
    for a, b in zip(runs[0].checkpoints, runs[1].checkpoints):
        assert torch.equal(a.example_ids, b.example_ids)
    other = train(_model(), x, y, CFG, generator=torch.Generator().manual_seed(8))
    assert any(not torch.equal(other.final[k], runs[0].final[k]) for k in other.final)


def test_checkpoint_bookkeeping():
    x, y = _data(n=43)  # 43 // 8 = 5 steps per epoch (drop_last)
    run = train(_model(), x, y, CFG, generator=torch.Generator().manual_seed(1))
    steps = 43 // 8
    assert run.total_iterations == 3 * steps
    # count and even spacing: 2 per epoch, at the epoch start and halfway
    assert [c.iteration for c in run.checkpoints] == [0, 2, 5, 7, 10, 12]
    assert checkpoint_iterations(steps, 3, 2) == [0, 2, 5, 7, 10, 12]
    # batch membership: intervals partition the iterations, each batch has b examples
    sizes = [len(c.example_ids) for c in run.checkpoints]
    assert sizes == [2 * 8, 3 * 8] * 3
    for e in range(3):  # within an epoch, examples are drawn without replacement
        ids = torch.cat([run.checkpoints[2 * e].example_ids, run.checkpoints[2 * e + 1].example_ids])
        assert len(set(ids.tolist())) == len(ids) == steps * 8
    # batch sizes and learning rates: lr is the one of the interval's first update (OneCycle)
    assert all(c.batch_size == 8 for c in run.checkpoints)
    sched_model = _model()
    opt = torch.optim.Adam(sched_model.parameters(), lr=CFG.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=CFG.lr, epochs=3, steps_per_epoch=steps,
                                                pct_start=0.3, cycle_momentum=False)
    lrs = []
    for _ in range(3 * steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [c.lr for c in run.checkpoints] == pytest.approx([lrs[c.iteration] for c in run.checkpoints])
    # checkpoint 0 holds theta_0
    for k, v in run.theta0.items():
        assert torch.equal(run.checkpoints[0].params[k], v)


def test_checkpoint_params_are_the_parameters_before_the_interval():
    """Replaying the recorded batches from checkpoint k's parameters reproduces checkpoint k+1."""
    x, y = _data()
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.0,
                      weight_decay=0.0, schedule="constant", checkpoints_per_epoch=5)
    run = train(_model(), x, y, cfg, generator=torch.Generator().manual_seed(3))
    model = _model()
    model.load_state_dict(run.checkpoints[1].params)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = run.checkpoints[1].example_ids
    for i in range(0, len(ids), 8):
        b = ids[i : i + 8]
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x[b])[:, 0], y[b].float()).backward()
        opt.step()
    for k, v in model.state_dict().items():
        assert torch.allclose(v, run.checkpoints[2].params[k], atol=1e-6)


def test_weight_decay_only_on_matrices():
    x, y = _data()
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.0, optimizer="sgd", momentum=0.0,
                      weight_decay=0.5, schedule="constant")
    # with lr 0 nothing moves; with lr > 0 and zero gradients only decayed tensors would shrink
    run = train(_model(), x, y, cfg, generator=torch.Generator().manual_seed(0))
    from benchmark.training.trainer import _param_groups

    groups = _param_groups(_model(), cfg)
    assert all(p.ndim >= 2 for p in groups[0]["params"]) and groups[0]["weight_decay"] == 0.5
    assert all(p.ndim == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0
    assert run.total_iterations == 5


def test_fine_tuning_starts_from_given_theta0(tmp_path):
    x, y = _data()
    pretrained = _model(seed=123).state_dict()
    run = train(_model(seed=0), x, y, CFG, generator=torch.Generator().manual_seed(0), theta0=pretrained)
    for k, v in pretrained.items():
        assert torch.equal(run.theta0[k], v)
        assert torch.equal(run.checkpoints[0].params[k], v)
    # round trip through the cache with weights_only=True
    path = tmp_path / "run.pt"
    run.save(path)
    back = TrainingRun.load(path)
    assert back.config == run.config and len(back.checkpoints) == len(run.checkpoints)
    for a, b in zip(back.checkpoints, run.checkpoints):
        assert a.lr == b.lr and torch.equal(a.example_ids, b.example_ids)
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def test_bad_configs():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")
    x, y = _data(n=10)
    with pytest.raises(ValueError, match="checkpoints_per_epoch"):
        train(_model(), x, y, TrainConfig(batch_size=4, checkpoints_per_epoch=5),
              generator=torch.Generator())
    assert math.isfinite(CFG.lr)


def test_adam_beta1_cycles_only_when_asked(monkeypatch):
    """OneCycleLR cycles Adam's beta1 (0.95 -> 0.85 -> 0.95) when cycle_momentum=True, as the
    reference code does; the default keeps it at 0.9 (a recorded deviation)."""
    seen: list[float] = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["betas"][0])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    for cycle, expect_cycled in ((None, False), (True, True)):
        seen.clear()
        cfg = TrainConfig(epochs=2, batch_size=16, checkpoints_per_epoch=1, cycle_momentum=cycle)
        train(build_model("mlp", (4,), 1), x, y, cfg, torch.Generator().manual_seed(0))
        assert (max(seen) - min(seen) > 0.05) is expect_cycled, (cycle, seen)
