"""Paper 001's pairwise influence (Sec. 3.2.1, Eq. 4), its solvers, the K-FAC / EK-FAC
preconditioner against kronfluence, and the GAS-based pairwise similarity (ours).

Oracles are literal and float64: one autograd call per example for the loss gradient
``grad L(z_i)`` and the gold-probability gradient ``grad F_{y_j}(z_j)``, the Hessian of the mean
training loss from ``torch.autograd.functional.hessian``, then
``I[i, j] = -grad F_j^T (H + damping I)^-1 grad L_i`` by a linear solve.

kronfluence conventions, each mapped explicitly in :func:`_kronfluence_scores` and the parity
tests (facts from its documentation and observed behaviour):

1. sign: kronfluence's pairwise score is ``+grad f(query)^T (G + damping)^-1 grad L(train)``;
   Eq. 4 has a minus: ours ``= -`` theirs;
2. layout: theirs is ``(n_query, n_train)``, ours ``(n_train, n_query)``: transposed;
3. damping: theirs is absolute, added to every curvature eigenvalue ``Lambda`` (both
   strategies), and ``damping_factor=None`` is ``0.1 * mean(Lambda)`` per module; ours is the
   same number (``damping``; ``None`` = the same heuristic per block);
4. loss sum vs mean: kronfluence wants the *summed* training loss (per-sample gradients are then
   the per-example losses' gradients) and divides its covariances / Lambda by the number of
   rows, i.e. it approximates the Fisher of the *mean* loss -- the same normalisation as our
   ``H`` of the mean loss, so no ``1/N`` factor appears anywhere;
5. Fisher: kronfluence's default samples one label per example from the model
   (``compute_train_loss(sample=True)``); ``use_empirical_fisher=True`` uses the true labels =
   our ``fisher="empirical"``.  Our default ``fisher="true"`` is the exact expectation
   ``sum_c p_ic d_ic d_ic^T``; kronfluence is driven to the same matrix by fitting its factors on
   the dataset replicated once per class, ``(x_i, c)`` with loss weight ``sqrt(p_ic)`` in the
   ``sample=True`` branch: its curvature is then ours divided by ``C`` (it counts ``N C``
   rows), so ``ours(damping) = theirs(damping / C) / C``;
6. convolutions: kronfluence averages the activation covariance over examples *and positions*,
   ours (KFC, Grosse & Martens 2016) sums over positions: ``A_ours = T A_theirs`` (``S`` equal),
   so for K-FAC over conv layers with ``T`` output positions ``ours(damping) = theirs(damping /
   T) / T``; EK-FAC is identical (its eigenbasis is scale-free and Lambda is fitted from
   per-example gradients);
7. bias: both append a column of ones to the layer input (one Kronecker block per layer);
8. scope: kronfluence tracks modules (``get_influence_tracked_modules``); a module name in our
   ``layers`` selects its weight and bias;
9. precision: parity is checked in float64 (models and every kronfluence dtype argument) to
   ``1e-12`` and at both libraries' float32 defaults to ``1e-5``; kronfluence writes its factors
   and scores under ``tmp_path``.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from benchmark.models import build_model
from benchmark.training.trainer import TrainConfig, train
from defenses.influence import reference as R
from defenses.influence.engine import WeightedCheckpoint, gold_prob, resolve_params
from defenses.influence.kfac import KFACConfig, fit_kfac
from defenses.influence.pairwise import DIRECT_BYTES, pairwise_gas, pairwise_influence

pytestmark = pytest.mark.usefixtures("one_thread")

D_IN, HIDDEN, N = 4, 8, 24
TOL32 = 1e-5  # float32 production path vs the float64 oracle (the house tolerance; measured ~3e-7)
TOL64 = 1e-12  # float64 models (measured ~2e-15)
TOL_KF64 = 1e-12  # kronfluence parity, float64 (measured <= 1.3e-15)
TOL_KF32 = 1e-5  # kronfluence parity, both libraries' float32 defaults (measured ~1.3e-7)
TOL_LISSA = 1e-6  # LiSSA (full-batch HVPs, 300 steps) vs exact (measured 1.4e-8; 50 steps: 1e-2)


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------------------
# a tiny trained MLP
# ------------------------------------------------------------------------------------------
class Setup:
    """``build_model("mlp", (4,), outputs, {"hidden": 8})`` trained on 24 random points."""

    def __init__(self, outputs: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        g = torch.Generator().manual_seed(seed)
        self.outputs, self.dtype = outputs, dtype
        classes = 2 if outputs == 1 else outputs
        self.x = torch.randn(N, D_IN, generator=g)
        self.y = torch.randint(0, classes, (N,), generator=g)
        self.y[:classes] = torch.arange(classes)  # every class present
        torch.manual_seed(seed)
        self.init = build_model("mlp", (D_IN,), outputs, {"hidden": HIDDEN}).state_dict()
        cfg = TrainConfig(epochs=30, batch_size=8, lr=0.03, schedule="constant", weight_decay=0.0,
                          checkpoints_per_epoch=1)
        self.run = train(self.factory32(), self.x, self.y, cfg, torch.Generator().manual_seed(seed))
        self.params = {k: v.to(dtype) for k, v in self.run.final.items()}
        self.x = self.x.to(dtype)

    def factory32(self) -> nn.Module:
        m = build_model("mlp", (D_IN,), self.outputs, {"hidden": HIDDEN})
        m.load_state_dict(self.init)
        return m

    def factory(self) -> nn.Module:
        return self.factory32().to(self.dtype)

    def model64(self) -> nn.Module:
        m = self.factory32().double()
        m.load_state_dict({k: v.double() for k, v in self.params.items()})
        return m.eval()


@pytest.fixture(scope="module")
def setups() -> dict:
    return {k: Setup(k) for k in (1, 2, 3)}


def oracle(s: Setup, names: list[str], damping: float) -> np.ndarray:
    """Eq. 4 literally, float64: per-example autograd gradients, autograd Hessian, solve."""
    model = s.model64()
    x = s.x.double()
    g = R.per_example_gradients(model, x, s.y, names=names)
    q = R.per_example_gradients(model, x, s.y, loss_fn=gold_prob, names=names)
    gm = torch.stack([torch.cat([t.reshape(-1) for t in gi]) for gi in g]).numpy()
    qm = torch.stack([torch.cat([t.reshape(-1) for t in qi]) for qi in q]).numpy()
    h = R.subset_hessian(model, names, x, s.y).numpy()
    return -gm @ np.linalg.solve(h + damping * np.eye(len(h)), qm.T)


SCOPES = {"all": "all", "subset": ["body.1.weight", "classifier"]}
#: H + 0.1 I is positive definite on these models (min eigenvalue of H about -0.06), so CG applies
DAMPING = 0.1


# ------------------------------------------------------------------------------------------
# Eq. 4 with the exact damped Hessian
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("outputs", [1, 2, 3])
@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_exact_pairwise_equals_literal_formula(setups, outputs, scope):
    s = setups[outputs]
    names = resolve_params(s.factory(), None if scope == "all" else SCOPES[scope])
    want = oracle(s, names, DAMPING)
    got = pairwise_influence(s.factory, s.params, s.x, s.y, layers=SCOPES[scope], damping=DAMPING)
    assert got.shape == (N, N) and got.dtype == np.float32
    assert rel(got, want) <= TOL32
    assert not np.allclose(got, got.T, rtol=1e-3)  # asymmetric: not symmetrised
    # both paths: gradients kept (the default at this size) and one engine pass per query tile
    engine = pairwise_influence(s.factory, s.params, s.x, s.y, layers=SCOPES[scope], damping=DAMPING,
                                direct_bytes=0)
    assert rel(engine, want) <= TOL32 and rel(got, engine) <= TOL32
    # float64 end to end, query tiles of 5 columns (+ a last one of 4), cg
    s64 = Setup(outputs, dtype=torch.float64)
    for direct_bytes in (DIRECT_BYTES, 0):
        tiled = pairwise_influence(s64.factory, s64.params, s64.x, s64.y, layers=SCOPES[scope], damping=DAMPING,
                                   dtype=np.float64, tile_bytes=8 * N * 5, direct_bytes=direct_bytes)
        assert rel(tiled, want) <= TOL64
        cg = pairwise_influence(s64.factory, s64.params, s64.x, s64.y, layers=SCOPES[scope], damping=DAMPING,
                                preconditioner="cg", dtype=np.float64, direct_bytes=direct_bytes)
        assert rel(cg, want) <= 1e-8  # CG to relative residual 1e-10 (measured ~4e-11)


@pytest.mark.parametrize("preconditioner", ["exact", "ekfac"])
def test_direct_path_equals_engine_path_on_a_conv_net(preconditioner):
    """The kept-gradients path (:data:`~defenses.influence.pairwise.DIRECT_BYTES`) against one
    engine pass per query tile, on a residual conv net (conv, batch norm, linear) in float64:
    the same matrix, whatever the scope's layer types."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=g)
    torch.manual_seed(0)
    init = build_model("resnet32", (3, 8, 8), 3, {"width": 4, "blocks_per_stage": 1}).state_dict()

    def factory():
        m = build_model("resnet32", (3, 8, 8), 3, {"width": 4, "blocks_per_stage": 1})
        m.load_state_dict(init)
        return m.double()

    params = {k: v.double() if v.is_floating_point() else v for k, v in factory().state_dict().items()}
    kw = dict(layers="all", preconditioner=preconditioner, damping=0.1, dtype=np.float64, tile_bytes=8 * 20 * 7)
    direct = pairwise_influence(factory, params, x, y, **kw)
    engine = pairwise_influence(factory, params, x, y, direct_bytes=0, **kw)
    assert rel(direct, engine) <= TOL64


def test_sign_and_scale_follow_eq4(setups):
    """Eq. 4 is the derivative of F_{y_j} under upweighting z_i: check by a finite difference of
    the damped objective's minimiser on the classifier (a convex scope) -- solved by Newton."""
    s = Setup(3, dtype=torch.float64)
    damping, eps, i, j = 0.05, 1e-4, 3, 7
    names = ["classifier.weight", "classifier.bias"]
    model = s.model64()
    feats = model.features(s.x).detach()
    w0 = torch.cat([model.classifier.weight.detach().reshape(-1), model.classifier.bias.detach()])

    def objective(w, e):  # mean loss + e * L(z_i) + damping/2 ||w - w0||^2 (the damped H)
        wt, b = w[:-3].reshape(3, -1), w[-3:]
        per = F.cross_entropy(feats @ wt.T + b, s.y, reduction="none")
        return per.mean() + e * per[i] + damping / 2 * ((w - w0) ** 2).sum()

    def minimiser(e):
        w = w0.clone()
        for _ in range(30):
            g = torch.autograd.functional.jacobian(lambda v: objective(v, e), w)
            h = torch.autograd.functional.hessian(lambda v: objective(v, e), w)
            w = w - torch.linalg.solve(h, g)
        return w

    def gold(w):
        wt, b = w[:-3].reshape(3, -1), w[-3:]
        return torch.softmax(feats[j] @ wt.T + b, 0)[s.y[j]]

    # Eq. 4 holds at a stationary point: evaluate it at the damped objective's minimiser
    w_star = minimiser(0.0)
    params = dict(s.params)
    params["classifier.weight"], params["classifier.bias"] = w_star[:-3].reshape(3, -1), w_star[-3:]
    fd = float((gold(minimiser(eps)) - gold(minimiser(-eps))) / (2 * eps))
    got = pairwise_influence(s.factory, params, s.x, s.y, layers=names, damping=damping, dtype=np.float64)
    assert got[i, j] == pytest.approx(fd, rel=1e-6)


def test_output_into_memmap_and_checks(setups, tmp_path):
    s = setups[3]
    mm = np.lib.format.open_memmap(tmp_path / "I.npy", mode="w+", dtype=np.float32, shape=(N, N))
    got = pairwise_influence(s.factory, s.params, s.x, s.y, layers=["classifier"], out=mm, tile_bytes=8 * N * 7)
    ref = pairwise_influence(s.factory, s.params, s.x, s.y, layers=["classifier"])
    assert got is mm and rel(mm, ref) <= 1e-6  # other query tiles: float32 rounding only
    with pytest.raises(ValueError, match="preconditioner must be one of"):
        pairwise_influence(s.factory, s.params, s.x, s.y, layers="all", preconditioner="arnoldi")
    with pytest.raises(ValueError, match="damping=None"):
        pairwise_influence(s.factory, s.params, s.x, s.y, layers="all", damping=None)
    with pytest.raises(ValueError, match="layers must be"):
        pairwise_influence(s.factory, s.params, s.x, s.y, layers=[])


# ------------------------------------------------------------------------------------------
# LiSSA
# ------------------------------------------------------------------------------------------
def test_lissa_approaches_exact():
    """Full-batch LiSSA with the effective damping of the exact solver: its error shrinks with
    the depth and reaches ``TOL_LISSA`` at 300 steps (automatic scale, power iteration)."""
    s = Setup(3, dtype=torch.float64)
    kw = dict(layers=["classifier"], damping=0.05, dtype=np.float64)
    exact = pairwise_influence(s.factory, s.params, s.x, s.y, **kw)
    short = pairwise_influence(s.factory, s.params, s.x, s.y, preconditioner="lissa", lissa_depth=50, **kw)
    deep = pairwise_influence(s.factory, s.params, s.x, s.y, preconditioner="lissa", lissa_depth=300, **kw)
    assert rel(deep, exact) < rel(short, exact)
    assert rel(deep, exact) <= TOL_LISSA
    # stochastic HVPs (the reference code's style) run and stay in the neighbourhood
    stoch = pairwise_influence(s.factory, s.params, s.x, s.y, preconditioner="lissa", lissa_depth=300,
                               lissa_batch_size=8, lissa_repeats=2, generator=torch.Generator().manual_seed(0), **kw)
    assert np.isfinite(stoch).all() and rel(stoch, exact) < 0.5


# ------------------------------------------------------------------------------------------
# K-FAC / EK-FAC
# ------------------------------------------------------------------------------------------
class GroupNet(nn.Module):
    """grouped strided conv (bias) -> ReLU -> conv (no bias) -> flatten -> Linear; for the
    block layout of grouped convolutions and weight-only blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1, stride=2, groups=2)
        self.conv2 = nn.Conv2d(4, 3, 2, bias=False)
        self.classifier = nn.Linear(3 * 16, 3)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        return self.classifier(torch.relu(self.conv2(h)).flatten(1))


@pytest.mark.parametrize("fisher", ["empirical", "true"])
def test_ekfac_lambda_is_projected_per_example_gradients(fisher):
    """EK-FAC's Lambda equals ``mean_i sum_c w_ic (Q_S^T G_i Q_A)^2`` with ``G_i`` from literal
    autograd per-example gradients (block layout: groups, bias column, weight-only blocks)."""
    torch.manual_seed(0)
    model = GroupNet().double()
    x, y = torch.randn(10, 2, 9, 9, dtype=torch.float64), torch.randint(0, 3, (10,))
    params = model.state_dict()
    fac = fit_kfac(lambda: GroupNet().double(), params, x, y, layers=None, config=KFACConfig(fisher=fisher))
    assert [b.names for b in fac.blocks] == [["conv1.weight", "conv1.bias"], ["conv2.weight"],
                                            ["classifier.weight", "classifier.bias"]]
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    labels = [(torch.ones(10, dtype=torch.float64), y)] if fisher == "empirical" else \
        [(p[:, c], torch.full_like(y, c)) for c in range(3)]
    for b in fac.blocks:
        want = torch.zeros_like(b.lam)
        for w, lab in labels:
            grads = R.per_example_gradients(model, x, lab, names=b.names)
            for i, gs in enumerate(grads):
                k = b.groups
                gm = gs[0].reshape(k, b.d_out, -1)
                if b.bias:
                    gm = torch.cat([gm, gs[1].reshape(k, b.d_out, 1)], -1)
                want += w[i] * (b.qs.transpose(-1, -2) @ gm @ b.qa) ** 2
        assert torch.allclose(b.lam, want / 10, rtol=1e-10, atol=1e-14)


def test_kfac_solve_is_damped_inverse_of_its_curvature(setups):
    s = setups[3]
    for strategy in ("kfac", "ekfac"):
        fac = fit_kfac(s.factory, s.params, s.x, s.y, layers=None, config=KFACConfig(strategy=strategy))
        g = fac.curvature()
        q = torch.randn(5, len(g), dtype=torch.float64)
        want = torch.linalg.solve(g + 0.01 * torch.eye(len(g), dtype=torch.float64), q.T).T
        assert torch.allclose(fac.solve(q, 0.01), want, rtol=1e-9, atol=1e-12)


def test_dense_block_is_exact_block_fisher(setups):
    """A bias selected without its weight is one full block: EK-FAC = K-FAC = the exact
    empirical Fisher of that tensor, ``mean_i g_i g_i^T``."""
    s = Setup(3, dtype=torch.float64)
    names = ["classifier.bias"]
    model = s.model64()
    g = torch.stack([gi[0] for gi in R.per_example_gradients(model, s.x, s.y, names=names)]).numpy()
    q = torch.stack([qi[0] for qi in R.per_example_gradients(model, s.x, s.y, loss_fn=gold_prob,
                                                             names=names)]).numpy()
    fisher = g.T @ g / N
    want = -g @ np.linalg.solve(fisher + 0.01 * np.eye(3), q.T)
    for strategy in ("ekfac", "kfac"):
        got = pairwise_influence(s.factory, s.params, s.x, s.y, layers=names, preconditioner=strategy,
                                 damping=0.01, kfac=KFACConfig(fisher="empirical"), dtype=np.float64)
        assert rel(got, want) <= TOL64


# ------------------------------------------------------------------------------------------
# kronfluence parity
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kf():
    return pytest.importorskip("kronfluence")


def _task(kf, modules: list[str] | None):
    """A kronfluence Task: summed cross-entropy (weighted by the third batch entry in the
    ``sample=True`` branch: the replicated true-Fisher dataset), measurement = summed gold-label
    probability (paper 001's F)."""

    class PairwiseTask(kf.Task):
        def compute_train_loss(self, batch, model, sample=False):
            xb, yb, wb = batch
            per = F.cross_entropy(model(xb), yb, reduction="none")
            return (per * wb).sum() if sample else per.sum()

        def compute_measurement(self, batch, model):
            xb, yb, _ = batch
            return torch.softmax(model(xb), dim=1).gather(1, yb[:, None]).sum()

        def get_influence_tracked_modules(self):
            return modules

    return PairwiseTask()


def _kronfluence_scores(kf, out_dir, factory, params, x, y, *, strategy, damping, fisher, modules=None,
                        float64=True) -> np.ndarray:
    """kronfluence's pairwise scores, mapped to ours: ``-theirs.T`` (conventions 1-2); ``fisher
    ="true"`` through the replicated dataset (convention 5, mapping applied here)."""
    task = _task(kf, modules)
    model = factory()
    model.load_state_dict(params)
    model = kf.prepare_model(model.eval(), task)
    classes = int(y.max()) + 1
    ds = TensorDataset(x, y, torch.ones(len(y), dtype=x.dtype))
    factor_ds, scale = ds, 1.0
    if fisher == "true":
        with torch.no_grad():
            p = torch.softmax(model(x), dim=1)
        factor_ds = TensorDataset(x.repeat_interleave(classes, 0), torch.arange(classes).repeat(len(y)),
                                  p.reshape(-1).sqrt())
        scale = float(classes)
    d = {"activation_covariance_dtype": torch.float64, "gradient_covariance_dtype": torch.float64,
         "per_sample_gradient_dtype": torch.float64, "lambda_dtype": torch.float64} if float64 else {}
    sd = {"per_sample_gradient_dtype": torch.float64, "precondition_dtype": torch.float64,
          "score_dtype": torch.float64} if float64 else {}
    an = kf.Analyzer("pairwise", model, task, cpu=True, disable_tqdm=True, output_dir=str(out_dir),
                     log_level=logging.WARNING)
    an.fit_all_factors("factors", factor_ds, per_device_batch_size=256, overwrite_output_dir=True,
                       factor_args=kf.FactorArguments(strategy=strategy, use_empirical_fisher=fisher == "empirical",
                                                      **d))
    kd = None if damping is None else damping / scale
    an.compute_pairwise_scores("scores", "factors", ds, ds, per_device_query_batch_size=256,
                               per_device_train_batch_size=256, overwrite_output_dir=True,
                               score_args=kf.ScoreArguments(damping_factor=kd, **sd))
    theirs = an.load_pairwise_scores("scores")["all_modules"].double().numpy() / scale
    return -theirs.T


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("strategy,fisher,damping,scope", [
    ("ekfac", "empirical", 0.01, "all"),
    ("kfac", "empirical", 0.01, "all"),
    ("ekfac", "true", 0.01, "all"),
    ("kfac", "true", None, "all"),
    ("ekfac", "empirical", None, "classifier"),
])
def test_kfac_matches_kronfluence_float64(kf, tmp_path, strategy, fisher, damping, scope):
    s = Setup(3, dtype=torch.float64)
    layers = "all" if scope == "all" else [scope]
    theirs = _kronfluence_scores(kf, tmp_path, s.factory, s.params, s.x, s.y, strategy=strategy,
                                 damping=damping, fisher=fisher, modules=None if scope == "all" else [scope])
    ours = pairwise_influence(s.factory, s.params, s.x, s.y, layers=layers, preconditioner=strategy,
                              damping=damping, kfac=KFACConfig(fisher=fisher), dtype=np.float64)
    assert rel(ours, theirs) <= TOL_KF64


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("strategy", ["ekfac", "kfac"])
def test_kfac_matches_kronfluence_float32(kf, tmp_path, setups, strategy):
    """Both libraries at their production (float32) precision; binary task with two logits."""
    s = setups[2]
    theirs = _kronfluence_scores(kf, tmp_path, s.factory, s.params, s.x, s.y, strategy=strategy,
                                 damping=0.01, fisher="empirical", float64=False)
    ours = pairwise_influence(s.factory, s.params, s.x, s.y, layers="all", preconditioner=strategy,
                              damping=0.01, kfac=KFACConfig(fisher="empirical"))
    assert rel(ours, theirs) <= TOL_KF32


class ConvNet(nn.Module):
    """conv (padding 1, 25 positions) -> ReLU -> flatten -> Linear (kronfluence tracks both)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.classifier = nn.Linear(3 * 25, 3)

    def forward(self, x):
        return self.classifier(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("strategy,scope", [("ekfac", "all"), ("kfac", "conv")])
def test_conv_kfac_matches_kronfluence(kf, tmp_path, strategy, scope):
    """Conv2d blocks: EK-FAC identical; K-FAC with convention 6 (``T = 25`` positions)."""
    torch.manual_seed(1)
    init = ConvNet().double().state_dict()

    def factory():
        m = ConvNet().double()
        m.load_state_dict(init)
        return m

    x, y = torch.randn(16, 2, 5, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    t = 25 if strategy == "kfac" else 1
    theirs = _kronfluence_scores(kf, tmp_path, factory, init, x, y, strategy=strategy, damping=0.01 / t,
                                 fisher="empirical", modules=None if scope == "all" else [scope]) / t
    ours = pairwise_influence(factory, init, x, y, layers="all" if scope == "all" else [scope],
                              preconditioner=strategy, damping=0.01, kfac=KFACConfig(fisher="empirical"),
                              dtype=np.float64)
    assert rel(ours, theirs) <= TOL_KF64


# ------------------------------------------------------------------------------------------
# GAS-based pairwise similarity (ours, not in paper 001)
# ------------------------------------------------------------------------------------------
def gas_oracle(s: Setup) -> np.ndarray:
    """``sum_c (eta_c / b) cos(g_c(z_i), g_c(z_j))``, one autograd call per example, float64."""
    out = np.zeros((N, N))
    for ck in s.run.checkpoints:
        model = s.factory32().double()
        model.load_state_dict(ck.params)
        gs = R.per_example_gradients(model, s.x.double(), s.y)
        gm = torch.stack([torch.cat([t.reshape(-1) for t in g]) for g in gs])
        norms = gm.norm(dim=1).clamp_min(R.MIN_NORM)
        out += ck.lr / ck.batch_size * ((gm @ gm.T) / (norms[:, None] * norms[None, :])).numpy()
    return out


@pytest.mark.parametrize("tile_cols", [None, 5])
def test_pairwise_gas_equals_brute_force(setups, tile_cols):
    s = setups[3]
    want = gas_oracle(s)
    kw = {} if tile_cols is None else {"tile_bytes": 8 * N * tile_cols}  # None: one tile, the engine's mirror
    got = pairwise_gas(s.factory, s.run, s.x, s.y, dtype=np.float64, **kw)
    assert rel(got, want) <= TOL32
    assert np.array_equal(got, got.T)
    total = sum(c.lr / c.batch_size for c in s.run.checkpoints)
    assert np.allclose(np.diag(got), total, rtol=1e-5)  # self-similarity = sum of the weights
    cks = [WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in s.run.checkpoints]
    same = pairwise_gas(s.factory, cks, s.x, s.y, dtype=np.float64, **kw)
    assert np.array_equal(same, got)
    f32 = pairwise_gas(s.factory, s.run, s.x, s.y, **kw)
    assert f32.dtype == np.float32 and np.allclose(f32, got, rtol=1e-6, atol=1e-9)
