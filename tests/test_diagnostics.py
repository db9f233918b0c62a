"""Fig. 2 / Fig. 3 diagnostics (paper 000 Sec. 4.2, 4.4) against brute-force float64 references."""
import json

import numpy as np
import pytest
import torch

from benchmark.diagnostics import (
    LayerSplit,
    LossTracking,
    layer_gradient_split,
    loss_tracking,
    plot_layer_split,
    plot_loss_tracking,
    resolve_parts,
    summarize_layer_split,
    summarize_loss_tracking,
)
from benchmark.models import build_model
from benchmark.training import TrainConfig, per_example_loss, predict, train

N = 40
N_ADV = 9


def _setup(n_out: int):
    g = torch.Generator().manual_seed(n_out)
    x = torch.rand(N, 1, 8, 8, generator=g)
    y = torch.randint(0, max(n_out, 2), (N,), generator=g)
    x[:N_ADV, :, :2, :2] = 1.0  # a corner "trigger" on the first N_ADV examples
    y[:N_ADV] = 0

    def factory():
        return build_model("small-cnn", (1, 8, 8), n_out, {"width": 4})

    torch.manual_seed(3)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.02, checkpoints_per_epoch=2)
    run = train(factory(), x, y, cfg, generator=torch.Generator().manual_seed(5))
    is_adv = np.zeros(N, dtype=bool)
    is_adv[:N_ADV] = True
    return factory, run, x, y, is_adv


@pytest.fixture(scope="module", params=[1, 3], ids=["bce-1logit", "ce-3class"])
def setup(request):
    return _setup(request.param)


def _points(run):
    return [c.params for c in run.checkpoints] + [run.final]


def _brute(factory, params, x, y):
    """Per-example float64 losses, gradient norms and per-tensor squared norms, one autograd call each."""
    model = factory()
    model.load_state_dict(params)
    model = model.double().eval()
    named = [(n, p) for n, p in model.named_parameters()]
    losses, norms, tensor_sq = [], [], []
    for i in range(len(y)):
        loss = per_example_loss(model(x[i : i + 1].double()), y[i : i + 1]).sum()
        gs = torch.autograd.grad(loss, [p for _, p in named])
        sq = [float((g * g).sum()) for g in gs]
        losses.append(float(loss.detach()))
        tensor_sq.append(sq)
        norms.append(np.sqrt(sum(sq)))
    return np.array(losses), np.array(norms), [n for n, _ in named], np.array(tensor_sq)


@pytest.fixture(scope="module")
def brute(setup):
    factory, run, x, y, _ = setup
    return [_brute(factory, p, x, y) for p in _points(run)]


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_loss_tracking_matches_bruteforce(setup, brute, dtype, rtol):
    factory, run, x, y, adv = setup
    r = loss_tracking(factory, run, x, y, torch.from_numpy(adv), chunk_size=7, dtype=dtype)
    assert isinstance(r, LossTracking)
    k = len(run.checkpoints) + 1
    assert r.iterations.tolist() == [c.iteration for c in run.checkpoints] + [run.total_iterations]
    np.testing.assert_allclose(r.lrs[:-1], [c.lr for c in run.checkpoints], rtol=0)
    assert np.isnan(r.lrs[-1])
    assert (r.n_adv, r.n_cl) == (N_ADV, N - N_ADV)
    for name in ("adv_loss_median", "cl_loss_q75", "gnr"):
        assert getattr(r, name).shape == (k,)
    for t, (losses, norms, _, _) in enumerate(brute):
        la, lc = losses[adv], losses[~adv]
        np.testing.assert_allclose(
            [r.adv_loss_median[t], r.adv_loss_q25[t], r.adv_loss_q75[t]],
            [np.median(la), np.percentile(la, 25), np.percentile(la, 75)], rtol=rtol)
        np.testing.assert_allclose(
            [r.cl_loss_median[t], r.cl_loss_q25[t], r.cl_loss_q75[t]],
            [np.median(lc), np.percentile(lc, 25), np.percentile(lc, 75)], rtol=rtol)
        np.testing.assert_allclose(r.losses[t], losses, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(r.grad_norms[t], norms, rtol=rtol)
        gnr = np.median(norms[adv]) / np.median(norms[~adv])  # Eq. 6 (gradient norms)
        np.testing.assert_allclose(r.gnr[t], gnr, rtol=rtol)
        np.testing.assert_allclose(r.adv_grad_norm_median[t], np.median(norms[adv]), rtol=rtol)
    # the statistics actually move during training (not a constant)
    assert not np.allclose(r.cl_loss_median[0], r.cl_loss_median[-1])


def test_loss_tracking_without_gradients_and_json(setup):
    factory, run, x, y, adv = setup
    r = loss_tracking(factory, run, x, y, adv, gradients=False)
    assert r.grad_norms is None and np.all(np.isnan(r.gnr))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["lrs"][-1] is None and d["gnr"][0] is None
    assert len(d["iterations"]) == len(run.checkpoints) + 1
    assert "GNR not computed" in summarize_loss_tracking(r)


def test_loss_tracking_rejects_bad_masks(setup):
    factory, run, x, y, adv = setup
    with pytest.raises(ValueError, match="both D_adv and D_cl"):
        loss_tracking(factory, run, x, y, np.zeros(N, dtype=bool), gradients=False)
    with pytest.raises(ValueError, match="length"):
        loss_tracking(factory, run, x, y, adv[:-1], gradients=False)
    with pytest.raises(ValueError, match="differ in length"):
        loss_tracking(factory, run, x, y[:-1], adv, gradients=False)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_layer_split_matches_bruteforce(setup, dtype, rtol):
    factory, run, x, y, _ = setup
    j = N_ADV + 2  # a clean example as the "target"
    final = factory()
    final.load_state_dict(run.final)
    y_final = int(predict(final.eval()(x[j : j + 1]))[0])
    s = layer_gradient_split(factory, run, x[j], None, dtype=dtype)  # None -> final prediction
    assert isinstance(s, LayerSplit)
    assert s.target_label == y_final
    assert (s.parts.first_module, s.parts.last_module) == ("body.0", "classifier")
    np.testing.assert_allclose(s.sq_fraction.sum(axis=1), 1.0, rtol=1e-12)
    model = factory()
    names = [n for n, _ in model.named_parameters()]
    assert list(s.parts.tensor_names) == names
    for t, params in enumerate(_points(run)):
        _, _, bnames, tsq = _brute(factory, params, x[j : j + 1], torch.tensor([y_final]))
        assert bnames == names
        np.testing.assert_allclose(s.tensor_sq_norms[t], tsq[0], rtol=rtol, atol=1e-14)
        first = sum(tsq[0][i] for i, n in enumerate(names) if n.startswith("body.0."))
        last = sum(tsq[0][i] for i, n in enumerate(names) if n.startswith("classifier."))
        total = tsq[0].sum()
        np.testing.assert_allclose(s.sq_fraction[t], [first / total, last / total,
                                                      (total - first - last) / total], rtol=rtol)
        np.testing.assert_allclose(s.part_norms[t], np.sqrt([first, last, total - first - last]), rtol=rtol)
        np.testing.assert_allclose(s.grad_norm[t], np.sqrt(total), rtol=rtol)
    n_out = model.classifier.out_features
    assert s.param_counts == (1 * 4 * 9 + 4, 8 * n_out + n_out,
                              sum(p.numel() for p in model.parameters()) - 40 - 9 * n_out)
    # an explicit label changes the gradient (checks the label is used)
    other = 1 - y_final if n_out == 1 else (y_final + 1) % n_out
    s2 = layer_gradient_split(factory, run, x[j], torch.tensor(other), dtype=torch.float64)
    assert s2.target_label == other and not np.allclose(s2.grad_norm, s.grad_norm)
    assert json.loads(json.dumps(s.to_dict()))["first_module"] == "body.0"


def test_layer_split_bad_label(setup):
    factory, run, x, _, _ = setup
    with pytest.raises(ValueError, match="one class index"):
        layer_gradient_split(factory, run, x[0], torch.tensor([0, 1]))


def test_resnet9_parameter_fractions():
    model = build_model("resnet9", (3, 32, 32), 1, {"width": 64})
    parts = resolve_parts(model)
    assert (parts.first_module, parts.last_module) == ("body.0.0", "classifier")
    assert parts.param_counts == (1792, 513, 6570753 - 1792 - 513)
    frac = parts.param_fraction
    np.testing.assert_allclose(frac[:2], [1792 / 6570753, 513 / 6570753], rtol=1e-12)
    assert round(100 * frac[0], 2) == 0.03 and round(100 * frac[1], 2) == 0.01  # paper 000 Fig. 3


def test_resolve_parts_mlp_and_errors():
    mlp = build_model("mlp", (5,), 2, {"hidden": 6, "depth": 2})
    parts = resolve_parts(mlp)  # no conv: first parameterised module
    assert (parts.first_module, parts.last_module) == ("body.1", "classifier")
    assert parts.param_counts == (36, 14, 42)
    assert resolve_parts(mlp, first="body.3").param_counts == (42, 14, 36)
    with pytest.raises(ValueError, match="no module named"):
        resolve_parts(mlp, first="conv1")
    with pytest.raises(ValueError, match="share parameters"):
        resolve_parts(mlp, first="classifier")
    with pytest.raises(ValueError, match="no trainable parameters"):
        resolve_parts(mlp, first="body.2")  # ReLU


def test_plots_and_summaries(setup, tmp_path):
    factory, run, x, y, adv = setup
    r = loss_tracking(factory, run, x, y, adv)
    s = layer_gradient_split(factory, run, x[0], int(y[0]))
    p1 = plot_loss_tracking(r, tmp_path / "sub" / "fig2.png")
    p2 = plot_layer_split([s, s], ["a", "b"], tmp_path / "fig3.png")
    for p in (p1, p2):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    text = summarize_loss_tracking(r)
    assert f"GNR {r.gnr[-1]:.3g}" in text and f"adv {r.adv_loss_median[0]:.3g}" in text
    text = summarize_layer_split(s)
    assert "body.0" in text and f"{np.mean(s.sq_fraction[:, 1]):.2%}" in text
    with pytest.raises(ValueError, match="labels"):
        plot_layer_split([s], ["a", "b"], tmp_path / "x.png")
