"""Exactness of the influence engine and every estimator against brute-force float64 oracles.

The production path runs in float32 (its production precision); the oracles
(``defenses.influence.reference``) take one autograd call per example in float64 and write the
paper's equations literally.  Agreement: ``||s - s*|| / ||s*|| <= 1e-5``.

Tiny models cover every layer rule: conv (unfold path and the grouped weight-gradient path),
grouped conv, batch-norm, linear, layer-norm, embedding with a padding index, Conv1d, and a raw
``nn.Parameter`` (torch.func fallback).
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.registry import defenses as registry
from benchmark.training.losses import num_outputs, predict
from benchmark.training.trainer import Checkpoint, TrainConfig, train
from benchmark.api import Evidence
from defenses.influence import engine as E
from defenses.influence import reference as R
from defenses.influence.hessian import SubsetObjective, conjugate_gradient, damped_inverse, lissa

import defenses  # noqa: F401  (registers the estimators)

TOL = 1e-5
DYNAMIC = ["tracin", "tracin-renorm", "tracin-l", "tracincp", "gas", "gas-l"]


pytestmark = pytest.mark.usefixtures("one_thread")


def rel(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a), dtype=torch.float64), torch.as_tensor(np.asarray(b), dtype=torch.float64)
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------------
# tiny models
# ------------------------------------------------------------------------------------------
class ConvNet(nn.Module):
    """conv -> BN -> ReLU(inplace) -> grouped strided conv -> ReLU -> linear -> LayerNorm -> head."""

    def __init__(self, side: int, outputs: int) -> None:
        super().__init__()
        s2 = (side - 3) // 2 + 1
        self.body = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
            nn.Conv2d(4, 4, 3, stride=2, groups=2), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * s2 * s2, 6), nn.LayerNorm(6), nn.ReLU(),
        )
        self.classifier = nn.Linear(6, outputs)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.body(x))


class TextNet(nn.Module):
    """embedding(pad 0) + positional nn.Parameter (fallback) -> LayerNorm -> per-position linear
    -> Conv1d over positions -> mean -> head."""

    def __init__(self, vocab: int, length: int, outputs: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 5, padding_idx=0)
        self.pos = nn.Parameter(0.1 * torch.randn(length, 5))
        self.norm = nn.LayerNorm(5)
        self.proj = nn.Linear(5, 4)
        self.conv = nn.Conv1d(4, 3, 3, padding=1)
        self.classifier = nn.Linear(3, outputs)

    def features(self, x):
        h = self.norm(self.emb(x) + self.pos)
        h = torch.relu(self.proj(h)).transpose(1, 2)
        return torch.relu(self.conv(h)).mean(-1)

    def forward(self, x):
        return self.classifier(self.features(x))


def _setup(kind: str, n: int = 24, m: int = 4, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    outs = num_outputs(classes)
    if kind == "conv6":
        factory = lambda: ConvNet(6, outs)  # noqa: E731
        x, qx = torch.rand(n, 2, 6, 6, generator=g), torch.rand(m, 2, 6, 6, generator=g)
    elif kind == "conv12":  # 144 positions: the grouped weight-gradient path
        factory = lambda: ConvNet(12, outs)  # noqa: E731
        x, qx = torch.rand(n, 2, 12, 12, generator=g), torch.rand(m, 2, 12, 12, generator=g)
    elif kind == "text":
        factory = lambda: TextNet(11, 7, outs)  # noqa: E731
        x, qx = torch.randint(0, 11, (n, 7), generator=g), torch.randint(0, 11, (m, 7), generator=g)
        x[:, -2:] = 0  # padding
    else:
        raise ValueError(kind)
    y = torch.randint(0, classes, (n,), generator=g)
    torch.manual_seed(seed)
    init = factory().state_dict()
    factory_seeded = lambda: _load(factory(), init)  # noqa: E731
    cfg = TrainConfig(epochs=2, batch_size=8, checkpoints_per_epoch=2, lr=0.02, schedule="constant")
    run = train(factory_seeded(), x, y, cfg, torch.Generator().manual_seed(seed))
    final = factory_seeded()
    final.load_state_dict(run.final)
    with torch.no_grad():
        qy = predict(final.eval()(qx))
    return types.SimpleNamespace(factory=factory_seeded, x=x, y=y, qx=qx, qy=qy, run=run, classes=classes)


def _load(model, state):
    model.load_state_dict(state)
    return model


@pytest.fixture(scope="module")
def setups():
    return {k: _setup(k) for k in ("conv6", "conv12", "text")} | {"binary": _setup("conv6", classes=2, seed=1)}


def _evidence(s, granted=("checkpoints", "queries", "model"), run=None):
    return Evidence(train_inputs=s.x, train_labels=s.y, num_classes=s.classes, rng=np.random.default_rng(0),
                    granted=frozenset(granted), model_factory=s.factory, final_params=s.run.final,
                    training_run=run or s.run, train_config=s.run.config, query_inputs=s.qx,
                    query_labels=s.qy)


# ------------------------------------------------------------------------------------------
# dynamic estimators (Eqs. 4, 5, 11, 12; Sec. 4.4)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["conv6", "conv12", "text"])
def test_dynamic_estimators_match_oracle(setups, kind):
    s = setups[kind]
    oracle = R.dynamic_influence(s.factory, s.run, s.x, s.y, s.qx, s.qy, DYNAMIC)
    for method in DYNAMIC:
        got = registry.get(method)().score(_evidence(s))
        want = oracle[method]
        assert got.shape == (len(s.y), len(s.qy)) and got.dtype == np.float64
        assert rel(got, want) <= TOL, (kind, method, rel(got, want))


@pytest.mark.parametrize("strategy", ["kernel", "materialise"])
def test_forced_strategies_and_func_fallback(setups, strategy):
    s = setups["conv12"]
    cks = [E.WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in s.run.checkpoints]
    want = R.dynamic_influence(s.factory, s.run, s.x, s.y, s.qx, s.qy, "gas-l")
    opts = E.EngineOptions(strategy=strategy, batch_size=5, query_batch_size=3)
    got = E.score_matrix(s.factory, cks, s.x, s.y, s.qx, s.qy, reduction="layerwise_cosine", options=opts)
    assert rel(got, want) <= TOL
    func = E.GradientMap("loss", use_func=True)
    got = E.score_matrix(s.factory, cks, s.x, s.y, s.qx, s.qy, reduction="layerwise_cosine",
                         train_map=func, query_map=func, options=opts)
    assert rel(got, want) <= TOL


@pytest.mark.parametrize("pixel", ["always", "never"])
def test_conv_kernel_paths(setups, pixel):
    """Both forms of the conv kernel identity (pixel Gram, im2col) and both materialisations
    (grouped weight-gradient kernel, im2col + GEMM) give the oracle's GAS."""
    paths = dict(pixel_gram=pixel, conv_grouped_min_positions=0 if pixel == "always" else 10_000)
    s = setups["conv6"]
    cks = [E.WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in s.run.checkpoints]
    want = R.dynamic_influence(s.factory, s.run, s.x, s.y, s.qx, s.qy, "gas")
    for strategy in ("kernel", "materialise"):
        opts = E.EngineOptions(strategy=strategy, batch_size=10, **paths)
        got = E.score_matrix(s.factory, cks, s.x, s.y, s.qx, s.qy, reduction="cosine", options=opts)
        assert rel(got, want) <= TOL, (pixel, strategy)
    # training x training, several tiles (tiny budget): the diagonal blocks use the held features
    got = E.score_matrix(s.factory, cks, s.x, s.y, reduction="layerwise_cosine",
                         options=E.EngineOptions(strategy="kernel", memory_budget=20_000, **paths))
    want = R.dynamic_influence(s.factory, s.run, s.x, s.y, s.x, s.y, "gas-l")
    assert rel(got, want) <= TOL


def test_tracin_multiplicity_credits_each_occurrence(setups):
    """Eq. 4: an example in two batches of an interval counts twice; absent examples 0."""
    s = setups["conv6"]
    n = len(s.y)
    cks = []
    for k, c in enumerate(s.run.checkpoints[:3]):
        ids = torch.cat([torch.arange(k, n, 3), torch.arange(0, 6)])  # 0..5 twice in some intervals
        cks.append(Checkpoint(c.iteration, c.params, c.lr, c.batch_size, ids))
    fake = types.SimpleNamespace(checkpoints=cks, n_train=n, config=s.run.config)
    methods = ("tracin", "tracin-renorm", "tracin-l")
    oracle = R.dynamic_influence(s.factory, fake, s.x, s.y, s.qx, s.qy, methods)
    for method in methods:
        got = registry.get(method)().score(_evidence(s, run=fake))
        want = oracle[method]
        assert rel(got, want) <= TOL, method


def test_weight_decay_in_gradient_option(setups):
    s = setups["conv6"]
    methods = ("gas", "gas-l", "tracincp")
    oracle = R.dynamic_influence(s.factory, s.run, s.x, s.y, s.qx, s.qy, methods, param_l2=0.05)
    plain = R.dynamic_influence(s.factory, s.run, s.x, s.y, s.qx, s.qy, methods)
    for method in methods:
        got = registry.get(method)(weight_decay_in_gradient=0.05).score(_evidence(s))
        assert rel(got, oracle[method]) <= TOL, method
        assert rel(got, plain[method]) > 1e-3  # the option changes the scores


def test_layer_subset(setups):
    s = setups["text"]
    got = registry.get("gas")(layers=["classifier", "pos"]).score(_evidence(s))
    names = ["classifier.weight", "classifier.bias", "pos"]
    cks = [E.WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in s.run.checkpoints]
    want = torch.zeros(len(s.y), len(s.qy), dtype=torch.float64)
    for ck in cks:
        model = s.factory()
        model.load_state_dict(ck.params)
        gt = R.per_example_gradients(model, s.x, s.y, names=names)
        gq = R.per_example_gradients(model, s.qx, s.qy, names=names)
        a = torch.stack([R._flat(g) for g in gt])
        b = torch.stack([R._flat(g) for g in gq])
        want += ck.weight * (a @ b.T) / (a.norm(dim=1)[:, None] * b.norm(dim=1)[None, :])
    assert rel(got, want) <= TOL


# ------------------------------------------------------------------------------------------
# invariants
# ------------------------------------------------------------------------------------------
def test_gas_self_influence_is_sum_of_weights(setups):
    s = setups["conv6"]
    cks = [E.WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in s.run.checkpoints]
    got = E.score_matrix(s.factory, cks, s.x, s.y, reduction="cosine")
    expected = sum(c.lr / c.batch_size for c in s.run.checkpoints)
    assert torch.allclose(got.diagonal(), torch.full((len(s.y),), expected, dtype=torch.float64), rtol=1e-6)


def test_train_by_train_tracincp_symmetric_and_exact(setups):
    s = setups["text"]
    cks = [E.WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in s.run.checkpoints]
    plain = E.score_matrix(s.factory, cks, s.x, s.y, options=E.EngineOptions(exploit_symmetry=False, batch_size=7))
    assert rel(plain, plain.T) <= 1e-6
    want = R.dynamic_influence(s.factory, s.run, s.x, s.y, s.x, s.y, "tracincp")
    assert rel(plain, want) <= TOL
    # the symmetric path, with several query tiles (tiny memory budget), gives the same matrix
    sym = E.score_matrix(s.factory, cks, s.x, s.y, options=E.EngineOptions(memory_budget=2000, batch_size=7))
    assert torch.equal(sym, sym.T)
    assert rel(sym, want) <= TOL


def test_gas_l_on_one_tensor_model_equals_gas():
    class OneTensor(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(12, 3, bias=False)

        def features(self, x):
            return x.flatten(1)

        def forward(self, x):
            return self.classifier(self.features(x))

    torch.manual_seed(3)
    x, y = torch.randn(20, 3, 4), torch.randint(0, 3, (20,))
    run = train(OneTensor(), x, y, TrainConfig(epochs=1, batch_size=5, checkpoints_per_epoch=3, lr=0.05,
                                                schedule="constant"), torch.Generator().manual_seed(0))
    cks = [E.WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in run.checkpoints]
    q = torch.randn(3, 3, 4)
    qy = torch.tensor([0, 1, 2])
    gas = E.score_matrix(OneTensor, cks, x, y, q, qy, reduction="cosine")
    gasl = E.score_matrix(OneTensor, cks, x, y, q, qy, reduction="layerwise_cosine")
    assert rel(gasl, gas) <= 1e-6


def test_zero_query_gradient_skips_checkpoint():
    """A query whose gradient is exactly zero at a checkpoint contributes nothing there."""
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(200.0)  # sigmoid saturates: BCE gradient for label 1 is exactly 0 in float32

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Linear(2, 1)

        def features(self, x):
            return x

        def forward(self, x):
            return self.classifier(x)

    state = {"classifier.weight": lin.weight.detach().clone(), "classifier.bias": lin.bias.detach().clone()}
    x, y = torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    got = E.score_matrix(Head, [E.WeightedCheckpoint(state, 1.0)], x, y, torch.randn(1, 2), torch.tensor([1]),
                         reduction="cosine")
    assert torch.equal(got, torch.zeros(6, 1, dtype=torch.float64))


# ------------------------------------------------------------------------------------------
# influence functions (Eqs. 1, 9), exact / CG / LiSSA
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,layers,damping", [("conv6", ("classifier",), 0.01), ("conv6", None, 2.0),
                                                 ("text", None, 0.5), ("binary", ("classifier", "body.6"), 0.5)])
def test_influence_functions_exact_and_cg(setups, kind, layers, damping):
    """Whole-model Hessians of these tiny nets are indefinite: a larger damping keeps H + dI
    positive definite, which CG needs (the exact solver does not)."""
    s = setups[kind]
    names = E.resolve_params(_final(s), layers)
    h = R.subset_hessian(_final(s), names, s.x, s.y)
    for method in ("if", "if-renorm", "if-l"):
        want = R.static_influence(_final(s), names, s.x, s.y, s.qx, s.qy, damping=damping, method=method,
                                  hessian=h)
        for solver in ("exact", "cg") if method == "if" else ("exact",):
            got = registry.get(method)(solver=solver, layers=layers or "all", damping=damping).score(_evidence(s))
            assert rel(got, want) <= TOL, (kind, layers, method, solver, rel(got, want))


def _final(s):
    model = s.factory()
    model.load_state_dict(s.run.final)
    return model


def test_lissa_converges_to_explicit_formula(setups):
    """Deterministic (full-batch) LiSSA's fixed point is (H + damp*scale I)^-1."""
    s = setups["conv6"]
    obj = SubsetObjective(_final(s), ["classifier.weight", "classifier.bias"], s.x, s.y)
    h = obj.hessian()
    scale = 2.0 * float(torch.linalg.eigvalsh(h).max())  # must exceed lambda_max (reference protocol)
    damp = 0.3  # contraction factor <= 0.7 per step: 100 steps reach ~1e-15
    b = torch.randn(3, obj.dim, dtype=torch.float64)
    got = lissa(obj.hvp, b, obj.n, damp, scale, depth=100, repeats=1, batch_size=None)
    want = b @ damped_inverse(h, damp * scale)
    assert rel(got, want) <= 1e-10
    # and through the defense, against the float64 oracle of Eq. 1
    d = registry.get("if")(layers=["classifier"], solver="lissa", lissa_damp=damp, lissa_scale=scale, lissa_depth=100,
                           lissa_repeats=1, lissa_batch_size=None)
    want = R.static_influence(_final(s), obj.names, s.x, s.y, s.qx, s.qy, damping=damp * scale)
    assert rel(d.score(_evidence(s)), want) <= TOL


def test_stochastic_lissa_reference_settings_run(setups):
    """The reference settings (batch-1 HVPs) give a finite estimate close to the explicit one."""
    s = setups["binary"]
    obj = SubsetObjective(_final(s), ["classifier.weight", "classifier.bias"], s.x, s.y)
    h = obj.hessian()
    scale = 4.0 * float(torch.linalg.eigvalsh(h).max())
    b = torch.randn(2, obj.dim, dtype=torch.float64)
    got = lissa(obj.hvp, b, obj.n, 0.05, scale, depth=100, repeats=2, batch_size=1,
                generator=torch.Generator().manual_seed(0))
    want = b @ damped_inverse(h, 0.05 * scale)
    assert torch.isfinite(got).all() and rel(got, want) <= 0.2


def test_cg_solver_directly():
    a = torch.randn(30, 30, dtype=torch.float64)
    h = a @ a.T / 30
    b = torch.randn(4, 30, dtype=torch.float64)
    x = conjugate_gradient(lambda v: v @ h, b, damping=0.1, max_iter=200, tol=1e-12)
    assert rel(x, b @ torch.linalg.inv(h + 0.1 * torch.eye(30, dtype=torch.float64))) <= 1e-9


def test_pairwise_influence_gold_score_equals_direct_formula(setups):
    """Paper 001 Eq. 4: -grad F_y(z2)^T H^-1 grad L(z1) for training pairs (explicit H)."""
    for kind in ("conv6", "binary"):
        s = setups[kind]
        model = _final(s)
        names = E.resolve_params(model, ("body.6", "classifier"))
        obj = SubsetObjective(model, names, s.x, s.y)
        pre = E.MatrixPreconditioner(names, damped_inverse(obj.hessian(), 0.01))
        x2, y2 = s.x[:9], s.y[:9]
        got = E.score_matrix(s.factory, [E.WeightedCheckpoint(s.run.final, -1.0)], s.x, s.y, x2, y2,
                             train_map="loss", query_map="gold_score", layers=names, preconditioner=pre)
        want = R.static_influence(_final(s), names, s.x, s.y, x2, y2, damping=0.01,
                                  query_fn=E.gold_prob, weight=-1.0)
        assert rel(got, want) <= TOL, kind


# ------------------------------------------------------------------------------------------
# representer point (Eqs. 2, 10)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["conv6", "binary", "text"])
def test_representer_point(setups, kind):
    s = setups[kind]
    for name, renorm in (("rp", False), ("rp-renorm", True)):
        for ci in ("train_label", "query_label"):
            got = registry.get(name)(class_index=ci).score(_evidence(s, granted=("model", "queries")))
            want = R.representer_point(_final(s), s.x, s.y, s.qx, s.qy, lam=s.run.config.weight_decay,
                                       renorm=renorm, class_index=ci)
            assert rel(got, want) <= TOL, (kind, name, ci)


def test_representer_point_needs_lambda(setups):
    s = setups["conv6"]
    ev = _evidence(s, granted=("model", "queries"))
    ev.training_run = ev.train_config = None
    with pytest.raises(ValueError, match="weight_decay"):
        registry.get("rp")().score(ev)
    assert registry.get("rp")(weight_decay=1e-3).score(ev).shape == (len(s.y), len(s.qy))


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
def test_clear_errors(setups):
    s = setups["conv6"]
    ck = [E.WeightedCheckpoint(s.run.final, 1.0)]
    with pytest.raises(ValueError, match="unknown reduction"):
        E.score_matrix(s.factory, ck, s.x, s.y, s.qx, s.qy, reduction="cos")
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        E.score_matrix(s.factory, ck, s.x, s.y, s.qx, s.qy, layers=["nope"])
    pre = E.MatrixPreconditioner(["classifier.weight"], torch.eye(18))
    with pytest.raises(ValueError, match="normalises the query side"):
        E.score_matrix(s.factory, ck, s.x, s.y, s.qx, s.qy, reduction="cosine", preconditioner=pre)
    with pytest.raises(ValueError, match="preconditioner covers"):
        E.score_matrix(s.factory, ck, s.x, s.y, s.qx, s.qy, layers=["classifier"], preconditioner=pre)
    with pytest.raises(Exception, match="solver"):
        registry.get("if")(layers="all", solver="newton")
    with pytest.raises(Exception, match="strategy"):
        E.EngineOptions(strategy="fast")
    with pytest.raises(ValueError, match="pixel_gram"):
        E.EngineOptions(pixel_gram="sometimes")


@pytest.mark.parametrize("kind", ["conv6", "binary"])
def test_head_cache_gives_the_same_hessian_and_hvps(setups, kind):
    """A classifier-only scope builds its Hessian from the cached classifier inputs (no double
    backward through the body): the same matrix and HVPs as through the whole model; a scope
    reaching into the body, or a model whose output is not classifier(features(x)), is not cached."""
    s = setups[kind]
    names = ["classifier.weight", "classifier.bias"]
    cached = SubsetObjective(_final(s), names, s.x, s.y, batch_size=7)
    full = SubsetObjective(_final(s), names, s.x, s.y, batch_size=7, head_cache=False)
    assert cached.head_inputs is not None and full.head_inputs is None
    assert rel(cached.hessian(), full.hessian()) <= 1e-13
    v, idx = torch.randn(3, cached.dim, dtype=torch.float64), torch.tensor([0, 4, 5])
    assert rel(cached.hvp(v, idx), full.hvp(v, idx)) <= 1e-13
    assert SubsetObjective(_final(s), ["classifier.weight"], s.x, s.y).head_inputs is not None
    body = E.resolve_params(_final(s), ("body.6", "classifier"))
    assert SubsetObjective(_final(s), body, s.x, s.y).head_inputs is None

    scaled = _final(s)  # forward is not classifier(features(x)): no cache
    scaled.forward = types.MethodType(lambda self, x: 2 * self.classifier(self.features(x)), scaled)
    assert SubsetObjective(scaled, names, s.x, s.y).head_inputs is None
