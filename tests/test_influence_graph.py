"""The registered influence-graph defenses (paper 001 Sec. 3) on a planted graph and on the quick
digits backdoor."""
import numpy as np
import pytest

from benchmark.config import ConfigError
from benchmark.experiment import MethodSpec
from benchmark.methods import build_method
from benchmark.metrics import auprc
from benchmark.protocols.common import make_evidence
from benchmark.rng import numpy_rng
from benchmark.runner import get_suite
from benchmark.trial import prepare_trial
from defenses.influence.influence_graph import InfluenceGraphAgglomerative, InfluenceGraphGreedy

NAMES = ("influence-graph-greedy", "influence-graph-agglomerative")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    tc = get_suite("quick").experiment("mitigation").resolve("smoke", 0, 0)
    return prepare_trial(tc, root, root / "cache")


def test_layers_are_required():
    with pytest.raises(ConfigError, match="set layers"):
        InfluenceGraphGreedy()
    with pytest.raises(ConfigError, match="preconditioner must be one of"):
        InfluenceGraphGreedy(layers="all", preconditioner="newton")


@pytest.mark.parametrize("cls", [InfluenceGraphGreedy, InfluenceGraphAgglomerative])
def test_planted_block_is_ranked_first(toy, cls, monkeypatch):
    """The wrapper symmetrises, searches eps N nodes and scores every example: with a planted
    block of mutually influential examples as the pairwise matrix, the block ranks first."""
    p = toy
    n, adv = len(p.is_adv), np.flatnonzero(p.is_adv)
    rng = np.random.default_rng(0)
    m = rng.normal(0, 0.1, (n, n))
    m[np.ix_(adv, adv)] += 1.0
    monkeypatch.setattr(cls, "edge_weights", lambda self, ev: m)
    method = cls(layers="all")
    scores = method.score(make_evidence(p, method.requires, numpy_rng(0)))
    assert scores.shape == (n,) and auprc(p.is_adv, scores) == 1.0


@pytest.mark.parametrize("name", NAMES + ("influence-graph-gas-greedy",))
def test_runs_on_the_digits_backdoor(toy, name):
    p = toy
    params = {"layers": ["classifier"]} if "gas" not in name else {}
    method = build_method(MethodSpec(name, name, params=params))
    ev = make_evidence(p, method.requires, numpy_rng(0))
    s1, s2 = method.score(ev), method.score(make_evidence(p, method.requires, numpy_rng(0)))
    assert s1.shape == (len(p.is_adv),) and np.isfinite(s1).all() and np.array_equal(s1, s2)
    assert sorted(s1) == list(range(1, len(s1) + 1))  # a rank score for every example
    print(name, "AUPRC", auprc(p.is_adv, s1), "base rate", p.is_adv.mean())


def test_greedy_and_agglomerative_share_one_matrix(toy, monkeypatch):
    """One Eq. 4 matrix per trial for both searches of the same setting (it dominated their cost);
    the scores equal those computed without the memo."""
    from dataclasses import replace

    import defenses.influence.influence_graph as ig

    calls = []
    real = ig.pairwise_influence
    monkeypatch.setattr(ig, "pairwise_influence", lambda *a, **k: calls.append(1) or real(*a, **k))
    p = replace(toy, memo={})
    methods = [build_method(MethodSpec(n, n, params={"layers": ["classifier"]})) for n in NAMES]
    shared = [m.score(make_evidence(p, m.requires, numpy_rng(0))) for m in methods]
    assert len(calls) == 1
    other = build_method(MethodSpec("g", NAMES[0], params={"layers": ["classifier"], "damping": 0.1}))
    other.score(make_evidence(p, other.requires, numpy_rng(0)))
    assert len(calls) == 2  # another damping is another matrix
    for m, s in zip(methods, shared):
        ev = make_evidence(p, m.requires, numpy_rng(0))
        ev.extras.pop("influence_memo")
        assert np.array_equal(m.score(ev), s)
    assert len(calls) == 4
