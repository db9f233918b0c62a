"""Shared passes (issue 14 item 8): one engine pass computes several terms, bit-identically.

* :func:`score_matrices` (several ``(reduction, use_multiplicity)`` terms in one pass over the
  checkpoints) returns, for every term, exactly (``torch.equal``) what :func:`score_matrix`
  returns for that term alone: every reduction, with and without multiplicities, with a
  preconditioner, shifted gradients (weight decay in the gradient), several query tiles and
  training batches, and the symmetric training x training path;
* the TracIn family (six defenses) and the IF family (three) read their scores from one shared
  pass through the trial's memo and give exactly the memo-less scores, in any order, with and
  without the trial's hint;
* counted forward passes: the second method of a trial triggers none.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.api.evidence import TRIAL_METHODS
from benchmark.api import Evidence
from benchmark.registry import defenses as registry
from benchmark.training.losses import num_outputs, predict
from benchmark.training.trainer import TrainConfig, train
from defenses.influence import engine as E
from defenses.influence.hessian import SubsetObjective, damped_inverse
from defenses.influence.tracin import weighted_checkpoints

import defenses  # noqa: F401  (registers the estimators)

pytestmark = pytest.mark.usefixtures("one_thread")

REDUCTIONS = tuple(E.REDUCTIONS)
DYNAMIC = ("tracincp", "gas", "gas-l", "tracin", "tracin-renorm", "tracin-l")
IF_FAMILY = ("if", "if-renorm", "if-l")


# ------------------------------------------------------------------------------------------
# tiny models (every forward counted)
# ------------------------------------------------------------------------------------------
FORWARDS = {"n": 0}


class ConvNet(nn.Module):
    """conv -> BN -> ReLU -> grouped strided conv -> ReLU -> linear -> LayerNorm -> head."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 4, 3, stride=2, groups=2), nn.ReLU(), nn.Flatten(),
            nn.Linear(16, 6), nn.LayerNorm(6), nn.ReLU(),
        )
        self.classifier = nn.Linear(6, outputs)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        FORWARDS["n"] += 1
        return self.classifier(self.body(x))


class TextNet(nn.Module):
    """embedding (pad 0) + positional nn.Parameter (torch.func fallback) -> Conv1d -> head."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 5, padding_idx=0)
        self.pos = nn.Parameter(0.1 * torch.randn(7, 5))
        self.conv = nn.Conv1d(5, 3, 3, padding=1)
        self.classifier = nn.Linear(3, outputs)

    def features(self, x):
        return torch.relu(self.conv((self.emb(x) + self.pos).transpose(1, 2))).mean(-1)

    def forward(self, x):
        FORWARDS["n"] += 1
        return self.classifier(self.features(x))


def _setup(kind: str, n: int = 30, m: int = 4, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    outs = num_outputs(classes)
    if kind == "conv":
        make = lambda: ConvNet(outs)  # noqa: E731
        x, qx = torch.rand(n, 2, 6, 6, generator=g), torch.rand(m, 2, 6, 6, generator=g)
    else:
        make = lambda: TextNet(outs)  # noqa: E731
        x, qx = torch.randint(0, 11, (n, 7), generator=g), torch.randint(0, 11, (m, 7), generator=g)
        x[:, -2:] = 0
    y = torch.randint(0, classes, (n,), generator=g)
    init = make().state_dict()

    def factory():
        model = make()
        model.load_state_dict(init)
        return model

    # 3 epochs x 2 checkpoints, batch 8: each interval credits ~half the rows, some twice
    cfg = TrainConfig(epochs=3, batch_size=8, checkpoints_per_epoch=2, lr=0.02, schedule="constant",
                      drop_last=False)
    run = train(factory(), x, y, cfg, torch.Generator().manual_seed(seed))
    final = factory()
    final.load_state_dict(run.final)
    with torch.no_grad():
        qy = predict(final.eval()(qx))
    return types.SimpleNamespace(factory=factory, x=x, y=y, qx=qx, qy=qy, run=run, classes=classes)


@pytest.fixture(scope="module")
def setups():
    return {k: _setup(k) for k in ("conv", "text")}


def _evidence(s, memo=None, hint=None, qx=None):
    extras = {} if memo is None else {"influence_memo": memo}
    if hint is not None:
        extras["influence_terms"] = hint
    return Evidence(train_inputs=s.x, train_labels=s.y, num_classes=s.classes, rng=np.random.default_rng(0),
                    granted=frozenset({"checkpoints", "queries", "model"}), model_factory=s.factory,
                    final_params=s.run.final, training_run=s.run, train_config=s.run.config,
                    query_inputs=s.qx if qx is None else qx, query_labels=s.qy, extras=extras)


def _cks(s, per_interval: bool):
    """The run's checkpoint terms; with ``per_interval`` every 7th row (from a per-checkpoint
    offset) gets one more credit, so that some rows count twice (Eq. 4's occurrences)."""
    cks = weighted_checkpoints(s.run, len(s.y), per_interval=per_interval)
    for k, c in enumerate(cks):
        if c.train_multiplicity is not None:
            c.train_multiplicity[k % 7 :: 7] += 1
    return cks


# ------------------------------------------------------------------------------------------
# the engine: several terms in one pass == each term alone, bit for bit
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["conv", "text"])
@pytest.mark.parametrize("strategy", ["auto", "kernel", "materialise"])
def test_multi_term_equals_single_term_bitwise(setups, kind, strategy):
    s = setups[kind]
    with_mult, plain = _cks(s, True), _cks(s, False)
    assert any(bool((c.train_multiplicity == 0).any()) for c in with_mult)  # some rows uncredited
    assert any(bool((c.train_multiplicity > 1).any()) for c in with_mult)  # some credited twice
    opts = E.EngineOptions(strategy=strategy, batch_size=7, query_batch_size=3)
    terms = [(r, u) for r in REDUCTIONS for u in (True, False)]
    multi = E.score_matrices(s.factory, with_mult, s.x, s.y, s.qx, s.qy, terms=terms, options=opts)
    assert set(multi) == set(terms)
    for r in REDUCTIONS:
        alone_mult = E.score_matrix(s.factory, with_mult, s.x, s.y, s.qx, s.qy, reduction=r, options=opts)
        alone_plain = E.score_matrix(s.factory, plain, s.x, s.y, s.qx, s.qy, reduction=r, options=opts)
        assert not torch.equal(alone_mult, alone_plain)  # the multiplicity matters
        assert torch.equal(multi[(r, True)], alone_mult), (kind, strategy, r, "multiplicity")
        assert torch.equal(multi[(r, False)], alone_plain), (kind, strategy, r, "no multiplicity")
    # a pass of a subset of the terms gives the same matrices again
    few = E.score_matrices(s.factory, with_mult, s.x, s.y, s.qx, s.qy,
                           terms=[("cosine", True), ("dot", False)], options=opts)
    assert torch.equal(few[("cosine", True)], multi[("cosine", True)])
    assert torch.equal(few[("dot", False)], multi[("dot", False)])


def test_multi_term_with_shift_and_query_tiles_bitwise(setups):
    """Weight decay in the gradient (a dense shift on both sides) and several query tiles."""
    s = setups["conv"]
    gmap = E.GradientMap("loss", param_l2=0.05)
    cks = _cks(s, True)
    for strategy in ("kernel", "materialise"):
        opts = E.EngineOptions(strategy=strategy, batch_size=11, query_batch_size=1, memory_budget=6000)
        terms = [(r, u) for r in ("dot", "cosine", "layerwise_cosine") for u in (False, True)]
        multi = E.score_matrices(s.factory, cks, s.x, s.y, s.qx, s.qy, terms=terms, train_map=gmap,
                                 query_map=gmap, options=opts)
        for r, u in terms:
            ck = cks if u else _cks(s, False)
            alone = E.score_matrix(s.factory, ck, s.x, s.y, s.qx, s.qy, reduction=r, train_map=gmap,
                                   query_map=gmap, options=opts)
            assert torch.equal(multi[(r, u)], alone), (strategy, r, u)


def test_multi_term_with_preconditioner_bitwise(setups):
    s = setups["conv"]
    model = s.factory()
    model.load_state_dict(s.run.final)
    names = E.resolve_params(model.eval(), ["classifier", "body.6"])
    h = SubsetObjective(model, names, s.x, s.y).hessian()
    pre = E.MatrixPreconditioner(names, damped_inverse(h, 0.5))
    ck = [E.WeightedCheckpoint(s.run.final, 1.0 / len(s.y))]
    terms = [("dot", True), ("train_cosine", True), ("layerwise_train_cosine", True)]
    opts = E.EngineOptions(batch_size=9, skip_zero_query=False)
    multi = E.score_matrices(s.factory, ck, s.x, s.y, s.qx, s.qy, terms=terms, layers=names,
                             preconditioner=pre, options=opts)
    for r, _ in terms:
        alone = E.score_matrix(s.factory, ck, s.x, s.y, s.qx, s.qy, reduction=r, layers=names,
                               preconditioner=pre, options=opts)
        assert torch.equal(multi[(r, True)], alone), r
    with pytest.raises(ValueError, match="normalises the query side"):
        E.score_matrices(s.factory, ck, s.x, s.y, s.qx, s.qy, terms=[("dot", True), ("cosine", True)],
                         layers=names, preconditioner=pre)


@pytest.mark.parametrize("kind", ["conv", "text"])
def test_symmetric_training_by_training_bitwise(setups, kind):
    s = setups[kind]
    plain, with_mult = _cks(s, False), _cks(s, True)
    opts = E.EngineOptions(batch_size=7, memory_budget=10_000)  # 2-3 diagonal tiles
    terms = [(r, False) for r in REDUCTIONS]
    multi = E.score_matrices(s.factory, plain, s.x, s.y, terms=terms, options=opts)
    for r, _ in terms:
        alone = E.score_matrix(s.factory, plain, s.x, s.y, reduction=r, options=opts)
        assert torch.equal(multi[(r, False)], alone), r
        if E.REDUCTIONS[r][1] == E.REDUCTIONS[r][2]:  # symmetric reductions: mirrored exactly
            assert torch.equal(alone, alone.T), r
    # terms ignoring multiplicities keep the symmetric path when the checkpoints carry them; a
    # term with multiplicity scores all its rows (its rows are weighted) and matches its own call
    mixed = E.score_matrices(s.factory, with_mult, s.x, s.y, terms=[("cosine", False), ("cosine", True)],
                             options=opts)
    assert torch.equal(mixed[("cosine", False)], multi[("cosine", False)])
    alone = E.score_matrix(s.factory, with_mult, s.x, s.y, reduction="cosine", options=opts)
    assert torch.equal(mixed[("cosine", True)], alone)


def test_share_multiplicity_batches_option(setups):
    """One set of batches for every term: terms without multiplicity stay bit-identical, those
    with it agree to float32 rounding (batched kernels round per-example results by batch)."""
    s = setups["text"]
    cks = _cks(s, True)
    terms = [(r, u) for r in ("dot", "cosine", "layerwise_cosine") for u in (False, True)]
    opts = E.EngineOptions(batch_size=16)
    exact = E.score_matrices(s.factory, cks, s.x, s.y, s.qx, s.qy, terms=terms, options=opts)
    shared = E.score_matrices(s.factory, cks, s.x, s.y, s.qx, s.qy, terms=terms,
                              options=E.EngineOptions(batch_size=16, share_multiplicity_batches=True))
    for t in terms:
        if t[1]:
            assert torch.allclose(shared[t], exact[t], rtol=1e-5, atol=1e-9 * float(exact[t].abs().max())), t
            credited = torch.stack([c.train_multiplicity for c in cks]).sum(0) > 0
            assert bool((shared[t][~credited] == 0).all())
        else:
            assert torch.equal(shared[t], exact[t]), t


def test_terms_are_validated(setups):
    s = setups["conv"]
    with pytest.raises(ValueError, match="unknown reduction"):
        E.score_matrices(s.factory, _cks(s, False), s.x, s.y, s.qx, s.qy, terms=[("nope", False)])
    with pytest.raises(ValueError, match="use_multiplicity"):
        E.score_matrices(s.factory, _cks(s, False), s.x, s.y, s.qx, s.qy, terms=["dot"])
    with pytest.raises(ValueError, match="no terms"):
        E.score_matrices(s.factory, _cks(s, False), s.x, s.y, s.qx, s.qy, terms=[])


# ------------------------------------------------------------------------------------------
# the defenses: memo path == memo-less path, bit for bit; no new pass for a second method
# ------------------------------------------------------------------------------------------
ALL_SIX = {("dot", False), ("cosine", False), ("layerwise_cosine", False),
           ("dot", True), ("cosine", True), ("layerwise_cosine", True)}


MIXED_ORDER = ("tracin-l", "gas", "tracincp", "tracin", "gas-l", "tracin-renorm")


@pytest.mark.parametrize("kind", ["conv", "text"])
@pytest.mark.parametrize("order,hint", [(DYNAMIC, None), (DYNAMIC[::-1], None), (DYNAMIC, ALL_SIX),
                                        (MIXED_ORDER, None), (MIXED_ORDER, ALL_SIX)])
def test_tracin_family_memo_equals_memoless(setups, kind, order, hint):
    s = setups[kind]
    alone = {m: registry.get(m)().score(_evidence(s)) for m in DYNAMIC}
    memo: dict = {}
    for m in order:
        got = registry.get(m)().score(_evidence(s, memo, hint))
        assert got.dtype == np.float64 and got.shape == (len(s.y), len(s.qy))
        assert np.array_equal(got, alone[m]), (kind, m, order, hint)
    assert len([k for k in memo if k[0] == "tracin-family-pass"]) == 1
    assert not np.array_equal(alone["gas"], alone["tracin-renorm"])


def test_if_family_memo_equals_memoless(setups):
    for kind, layers, damping in (("conv", "all", 2.0), ("text", ["classifier", "conv"], 0.5)):
        s = setups[kind]
        alone = {m: registry.get(m)(layers=layers, damping=damping).score(_evidence(s)) for m in IF_FAMILY}
        for order in (IF_FAMILY, IF_FAMILY[::-1]):
            memo: dict = {}
            for m in order:
                got = registry.get(m)(layers=layers, damping=damping).score(_evidence(s, memo))
                assert np.array_equal(got, alone[m]), (kind, m, order)
            assert len([k for k in memo if k[0] == "if-family-pass"]) == 1


def _forwards(fn) -> int:
    before = FORWARDS["n"]
    fn()
    return FORWARDS["n"] - before


def test_second_method_of_a_trial_triggers_no_new_pass(setups):
    s = setups["conv"]
    # with the trial's hint: one pass for all six
    memo: dict = {}
    counts = {m: _forwards(lambda m=m: registry.get(m)().score(_evidence(s, memo, ALL_SIX))) for m in DYNAMIC}
    assert counts["tracincp"] > 0, counts
    assert all(counts[m] == 0 for m in DYNAMIC[1:]), counts
    # without a hint: the first method of each kind (CP / interval) makes the pass of its kind
    memo = {}
    counts = {m: _forwards(lambda m=m: registry.get(m)().score(_evidence(s, memo))) for m in DYNAMIC}
    assert counts["tracincp"] > 0 and counts["tracin"] > 0, counts
    assert all(counts[m] == 0 for m in ("gas", "gas-l", "tracin-renorm", "tracin-l")), counts
    # without a memo every method makes its own pass
    assert all(_forwards(lambda m=m: registry.get(m)().score(_evidence(s))) > 0 for m in ("gas", "gas-l"))
    # the IF family: the first variant builds the Hessian and makes the pass, the others nothing
    memo = {}
    counts = {m: _forwards(lambda m=m: registry.get(m)(layers="all", damping=2.0).score(_evidence(s, memo)))
              for m in IF_FAMILY}
    assert counts["if"] > 0 and counts["if-renorm"] == 0 and counts["if-l"] == 0, counts


def test_memo_keys_separate_settings_and_queries(setups):
    """Other settings, other query tensors: their own pass and their own (memo-less) scores."""
    s = setups["conv"]
    memo: dict = {}
    plain = registry.get("gas")().score(_evidence(s, memo))
    wd = registry.get("gas")(weight_decay_in_gradient=0.05).score(_evidence(s, memo))
    assert np.array_equal(wd, registry.get("gas")(weight_decay_in_gradient=0.05).score(_evidence(s)))
    assert not np.array_equal(plain, wd)
    stride = registry.get("tracincp")(checkpoint_stride=2).score(_evidence(s, memo))
    assert np.array_equal(stride, registry.get("tracincp")(checkpoint_stride=2).score(_evidence(s)))
    qx2 = s.qx.flip(0).contiguous()
    other = registry.get("gas")().score(_evidence(s, memo, qx=qx2))
    assert np.array_equal(other, registry.get("gas")().score(_evidence(s, qx=qx2)))
    assert len([k for k in memo if k[0] == "tracin-family-pass"]) == 4
    # the returned arrays are the caller's own: changing one leaves the memo intact
    plain[:] = 0
    assert np.array_equal(registry.get("gas")().score(_evidence(s, memo)),
                          registry.get("gas")().score(_evidence(s)))


def test_the_trial_methods_from_the_harness_act_as_the_hint(setups):
    """The runner lists a trial's methods (Evidence.extras[TRIAL_METHODS]); the first TracIn-family
    method computes the terms of every sibling with equal settings, a sibling with other settings
    makes its own pass."""
    s = setups["conv"]
    methods = {m: registry.get(m)() for m in DYNAMIC}
    other = registry.get("tracin")(min_norm=0.5)
    memo: dict = {}

    def ev():
        e = _evidence(s, memo)
        e.extras[TRIAL_METHODS] = (*methods.values(), other)
        return e

    counts = {m: _forwards(lambda m=m: methods[m].score(ev())) for m in DYNAMIC}
    assert counts[DYNAMIC[0]] > 0 and all(counts[m] == 0 for m in DYNAMIC[1:]), counts
    assert _forwards(lambda: other.score(ev())) > 0


def test_siblings_without_tracin_methods_fall_back_to_the_own_kind(setups):
    """A trial whose listed methods hold no TracIn-family method (e.g. FIT rankers whose
    estimators are GAS / GAS-L) still shares the own kind's pass: GAS-L after GAS costs no pass."""
    s = setups["conv"]
    memo: dict = {}

    class Ranker:  # stands in for a FIT ranker: holds its estimator
        def __init__(self, est):
            self.estimator = est

    gas, gasl = registry.get("gas")(), registry.get("gas-l")()
    for siblings in ((object(),), (Ranker(gas), Ranker(gasl))):
        memo = {}

        def ev():
            e = _evidence(s, memo)
            e.extras[TRIAL_METHODS] = siblings
            return e

        assert _forwards(lambda: gas.score(ev())) > 0
        assert _forwards(lambda: gasl.score(ev())) == 0
