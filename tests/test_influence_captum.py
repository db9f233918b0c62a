"""Peer check: our TracInCP equals captum's TracInCP (captum.influence, test-only dependency) on
the same model, checkpoints and data, within 1e-4 relative norm."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.training.losses import num_outputs, per_example_loss, predict
from benchmark.training.trainer import TrainConfig, train
from defenses.influence import engine as E

captum_influence = pytest.importorskip("captum.influence", reason="captum is a test-only dependency (pip install captum)")


pytestmark = pytest.mark.usefixtures("one_thread")


class PerExampleLoss(nn.Module):
    """The benchmark's per-example loss, with the ``reduction`` attribute captum inspects."""

    def __init__(self, reduction: str = "none") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = per_example_loss(logits, labels)
        return loss if self.reduction == "none" else loss.sum()


class Net(nn.Module):
    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(36, 5), nn.ReLU())
        self.classifier = nn.Linear(5, outputs)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.body(x))


@pytest.mark.parametrize("classes", [2, 3])
def test_tracincp_equals_captum(tmp_path, classes):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(30, 2, 6, 6, generator=g), torch.randint(0, classes, (30,), generator=g)
    factory = lambda: Net(num_outputs(classes))  # noqa: E731
    init = factory().state_dict()

    def fresh():
        m = factory()
        m.load_state_dict(init)
        return m

    run = train(fresh(), x, y, TrainConfig(epochs=2, batch_size=10, checkpoints_per_epoch=2, lr=0.02,
                                            schedule="onecycle"), g)
    final = fresh()
    final.load_state_dict(run.final)
    qx = torch.rand(4, 2, 6, 6, generator=g)
    with torch.no_grad():
        qy = predict(final.eval()(qx))

    paths, lrs = [], {}
    for k, ck in enumerate(run.checkpoints):
        p = tmp_path / f"ckpt{k}.pt"
        torch.save(ck.params, p)
        paths.append(str(p))
        lrs[str(p)] = ck.lr / ck.batch_size

    def load(model, path):
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
        return lrs[path]  # captum multiplies each checkpoint's dot products by this

    model = fresh().eval()
    dataset = torch.utils.data.TensorDataset(x, y)
    tracin = captum_influence.TracInCP(model, dataset, paths, checkpoints_load_func=load,
                                       loss_fn=PerExampleLoss("none"), batch_size=8)
    theirs = tracin.influence((qx, qy)).T.double()  # captum: (n_queries, n_train)

    cks = [E.WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in run.checkpoints]
    ours = E.score_matrix(fresh, cks, x, y, qx, qy, reduction="dot")
    assert ours.shape == theirs.shape
    err = float((ours - theirs).norm() / theirs.norm())
    assert err <= 1e-4, err
    assert np.isfinite(ours.numpy()).all() and float(theirs.norm()) > 0
