"""The trivial baseline scorers (input norm, final loss, gradient norm) against brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.api import Evidence
from benchmark.models import build_model
from benchmark.registry import defenses
from benchmark.training import TrainConfig, train
from benchmark.training.losses import per_example_loss
from defenses.influence import reference as R

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (30,), generator=g)
    torch.manual_seed(0)
    factory = lambda: build_model("small-cnn", (1, 6, 6), 3, {"width": 3})  # noqa: E731 - conv + BN + linear
    run = train(factory(), x, y, TrainConfig(epochs=2, batch_size=10, checkpoints_per_epoch=1),
                torch.Generator().manual_seed(0))
    ev = Evidence(train_inputs=x, train_labels=y, num_classes=3, rng=np.random.default_rng(0),
                  granted=frozenset({"model"}), model_factory=factory, final_params=run.final,
                  train_config=run.config)
    return factory, run, x, y, ev


def test_input_norm(trained):
    *_, x, y, ev = trained
    want = x.reshape(len(x), -1).double().norm(dim=1).numpy()
    assert np.allclose(defenses.get("input-norm")().score(ev), want)
    assert np.allclose(defenses.get("input-norm")(negate=True).score(ev), -want)


def test_final_loss(trained):
    factory, run, x, y, ev = trained
    model = factory()
    model.load_state_dict(run.final)
    with torch.no_grad():
        want = per_example_loss(model.eval()(x), y).double().numpy()
    assert np.allclose(defenses.get("loss")(batch_size=7).score(ev), want, rtol=1e-6)


@pytest.mark.parametrize("layers", ["all", ["classifier"]])
def test_grad_norm_equals_float64_brute_force(trained, layers):
    factory, run, x, y, ev = trained
    model = factory()
    model.load_state_dict(run.final)
    names = None if layers == "all" else ["classifier.weight", "classifier.bias"]
    grads = R.per_example_gradients(model, x, y, names=names)
    want = np.array([float(torch.cat([g.reshape(-1) for g in gs]).norm()) for gs in grads])
    got = defenses.get("grad-norm")(layers=layers, batch_size=8).score(ev)
    assert np.allclose(got, want, rtol=1e-4)
