"""Representer point on one-logit binary models (issue 8, item 1) and the representer identity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.api import Evidence
from benchmark.models import build_model
from benchmark.registry import defenses
from benchmark.training import TrainConfig, predict, predict_logits, train
from defenses.influence import reference as R


pytestmark = pytest.mark.usefixtures("one_thread")


def _evidence(factory, params, x, y, qx, qy, num_classes, wd):
    return Evidence(train_inputs=x, train_labels=y, num_classes=num_classes, rng=np.random.default_rng(0),
                    granted=frozenset({"model", "queries"}), model_factory=factory, final_params=params,
                    train_config=TrainConfig(weight_decay=wd), query_inputs=qx, query_labels=qy)


@pytest.fixture(scope="module")
def supporters_of_a_label0_target():
    """Binary 2-D task (class 0 around (-2, 0), class 1 around (2, 0)) plus 10 supporters labelled 0
    around (3, 4); the target at (3, 4) is predicted 0 because of them."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n_cl, n_sup = 60, 10
    x = torch.cat([torch.randn(n_cl, 2, generator=g) * 0.5 + torch.tensor([-2.0, 0.0]),
                   torch.randn(n_cl, 2, generator=g) * 0.5 + torch.tensor([2.0, 0.0]),
                   torch.randn(n_sup, 2, generator=g) * 0.3 + torch.tensor([3.0, 4.0])])
    y = torch.cat([torch.zeros(n_cl), torch.ones(n_cl), torch.zeros(n_sup)]).long()
    supporter = np.r_[np.zeros(2 * n_cl, bool), np.ones(n_sup, bool)]
    factory = lambda: build_model("mlp", (2,), 1, {"hidden": 16})  # noqa: E731 - one logit, ReLU features
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=30, batch_size=16, lr=0.02, schedule="constant", checkpoints_per_epoch=1)
    run = train(factory(), x, y, cfg, torch.Generator().manual_seed(0))
    model = factory()
    model.load_state_dict(run.final)
    qx = torch.tensor([[3.0, 4.0]])
    qy = predict(predict_logits(model, qx))
    assert int(qy[0]) == 0
    return factory, run.final, x, y, qx, qy, supporter


@pytest.mark.parametrize("name", ["rp", "rp-renorm"])
def test_supporters_of_a_target_predicted_0_rank_first(supporters_of_a_label0_target, name):
    factory, final, x, y, qx, qy, supporter = supporters_of_a_label0_target
    ev = _evidence(factory, final, x, y, qx, qy, 2, 1e-3)
    scores = defenses.get(name)().score(ev)[:, 0]
    top = np.argsort(-scores, kind="stable")[: supporter.sum()]
    assert supporter[top].all()
    # the reference code's dL/da of the single logit (the old default): every label-0 example
    # scores <= 0, so the supporters rank last
    old = defenses.get(name)(class_index="single_logit").score(ev)[:, 0]
    assert (old[y.numpy() == 0] <= 0).all()
    assert not supporter[np.argsort(-old, kind="stable")[: supporter.sum()]].any()


@pytest.mark.parametrize("class_index", ["query_label", "train_label", "single_logit"])
def test_one_logit_matches_the_independent_two_class_oracle(supporters_of_a_label0_target, class_index):
    factory, final, x, y, qx, qy, _ = supporters_of_a_label0_target
    qx2 = torch.cat([qx, torch.tensor([[2.0, 0.0], [-2.0, 0.0]])])
    model = factory()
    model.load_state_dict(final)
    qy2 = predict(predict_logits(model, qx2))
    for name, renorm in (("rp", False), ("rp-renorm", True)):
        got = defenses.get(name)(class_index=class_index).score(_evidence(factory, final, x, y, qx2, qy2, 2, 1e-3))
        want = R.representer_point(model, x, y, qx2, qy2, lam=1e-3, renorm=renorm, class_index=class_index)
        assert np.allclose(got, want.numpy(), rtol=1e-5, atol=1e-7), (name, class_index)


@pytest.mark.parametrize("classes", [2, 3])
def test_representer_identity_at_a_stationary_point(classes):
    """Yeh et al. Thm. 3.1: at a stationary point of (1/n) sum_i L_i + lam ||W||^2 over the final
    layer's weight W (bias unregularised), sum_i I_RP(z_i, z_te) with class_index="query_label"
    is the pre-activation W f_te of the predicted class (for one logit: +-w.f_te)."""
    torch.manual_seed(1)
    n, lam = 40, 0.05
    x = torch.randn(n, 4)
    y = torch.randint(0, classes, (n,))
    n_out = 1 if classes == 2 else classes
    factory = lambda: build_model("mlp", (4,), n_out, {"hidden": 6})  # noqa: E731
    model = factory().double()
    with torch.no_grad():
        f = model.features(x.double())
    w = torch.zeros(n_out, f.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_out, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        a = f @ w.T + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(a[:, 0], y.double()) if n_out == 1
                else torch.nn.functional.cross_entropy(a, y))
        loss = loss + lam * (w * w).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    closure()
    assert float(w.grad.abs().max()) < 1e-7  # stationary
    with torch.no_grad():
        model.classifier.weight.copy_(w)
        model.classifier.bias.copy_(b)
    params = {k: v.float() for k, v in model.state_dict().items()}
    qx = torch.randn(5, 4)
    qmodel = factory()
    qmodel.load_state_dict(params)
    qy = predict(predict_logits(qmodel, qx))
    scores = defenses.get("rp")(weight_decay=lam).score(_evidence(factory, params, x, y, qx, qy, classes, lam))
    with torch.no_grad():
        pre = (model.features(qx.double()) @ w.T).numpy()  # W f_te, bias excluded
    want = pre[:, 0] * (2 * qy.numpy() - 1) if n_out == 1 else pre[np.arange(len(qy)), qy.numpy()]
    assert np.allclose(scores.sum(0), want, rtol=1e-4, atol=1e-5)
