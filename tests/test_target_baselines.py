"""Target-identification baselines (paper 000 Sec. 6.3) on inputs where the answer is known,
and the TargetRanker contract / registry."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import baselines  # noqa: F401  (registers the baselines)
from benchmark.api import TargetRanker
from baselines.certainty import LeastCertain, MostCertain
from baselines.knn import MaxKNNDistance, MinKNNDistance, kth_neighbour_distance
from baselines.random import RandomRanker
from benchmark.config import ConfigError
from benchmark.registry import target_rankers
from benchmark.api import NEEDS, Evidence, MissingEvidence


class IdentityFeatures(nn.Module):
    """features(x) = x on 2-D inputs; a fixed linear head with ``out`` logits."""

    def __init__(self, out: int = 1) -> None:
        super().__init__()
        self.classifier = nn.Linear(2, out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_evidence(train_x, queries, preds, head: nn.Linear | None = None, seed: int = 0,
                  granted=frozenset({"model", "queries"})) -> Evidence:
    out = 1 if head is None else head.out_features
    model = IdentityFeatures(out)
    if head is not None:
        model.classifier.load_state_dict(head.state_dict())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    train_x = torch.as_tensor(train_x, dtype=torch.float32)
    return Evidence(train_inputs=train_x, train_labels=torch.zeros(len(train_x), dtype=torch.long),
                    num_classes=max(2, out), rng=np.random.default_rng(seed), granted=granted,
                    model_factory=lambda: IdentityFeatures(out), final_params=state,
                    query_inputs=torch.as_tensor(queries, dtype=torch.float32),
                    query_labels=torch.as_tensor(preds, dtype=torch.long))


@pytest.fixture()
def cluster():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 2))
    queries = np.concatenate([rng.normal(size=(3, 2)) * 0.5, [[100.0, 100.0]],
                              rng.normal(size=(2, 2)) * 0.5])  # query 3 is far away
    return train, queries


def brute_kth(train: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.array([np.sort(np.linalg.norm(train - q, axis=1))[k - 1] for q in queries])


def test_knn_distances_match_brute_force_and_rank_the_far_candidate(cluster):
    train, queries = cluster
    ev = make_evidence(train, queries, np.zeros(len(queries)))
    want = brute_kth(train.astype(np.float32).astype(np.float64),
                     queries.astype(np.float32).astype(np.float64), 10)
    high = MaxKNNDistance()(ev)
    low = MinKNNDistance()(ev)
    np.testing.assert_allclose(high, want, rtol=1e-9)
    np.testing.assert_allclose(low, -want, rtol=1e-9)
    assert np.argmax(high) == 3  # the far-away candidate ranks first for max-knn ...
    assert np.argmin(low) == 3  # ... and last for min-knn
    k3 = MaxKNNDistance(k=3)(ev)
    np.testing.assert_allclose(k3, brute_kth(train.astype(np.float32).astype(np.float64),
                                             queries.astype(np.float32).astype(np.float64), 3),
                               rtol=1e-9)


def test_knn_uses_the_kth_neighbour_not_the_nearest():
    # query A has one training point on top of it and its next ones ~10 away; query B sits
    # 1 away from ten training points: A is nearer by its 1st neighbour, farther by its 10th
    train = np.concatenate([[[0.0, 0.0]], np.full((9, 2), 50.0), np.tile([[10.0, 1.0]], (10, 1))])
    queries = np.array([[0.0, 0.0], [10.0, 0.0]])
    ev = make_evidence(train, queries, [0, 0])
    np.testing.assert_allclose(MaxKNNDistance(k=1)(ev), [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(MaxKNNDistance(k=10)(ev), [math.sqrt(101.0), 1.0], rtol=1e-6)
    assert np.argmax(MinKNNDistance(k=1)(ev)) == 0 and np.argmax(MinKNNDistance(k=10)(ev)) == 1


def test_knn_chunking_and_errors():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(37, 5, dtype=torch.float64, generator=g)
    t = torch.randn(80, 5, dtype=torch.float64, generator=g)
    np.testing.assert_allclose(kth_neighbour_distance(q, t, 4, chunk_elems=100),
                               brute_kth(t.numpy(), q.numpy(), 4), rtol=1e-9)
    with pytest.raises(ValueError, match="exceeds"):
        kth_neighbour_distance(q, t, 81)
    with pytest.raises(ValueError, match="k must be"):
        MaxKNNDistance(k=0)


def bce(z: float, y: int) -> float:
    return math.log1p(math.exp(-z)) if y == 1 else math.log1p(math.exp(z))


def test_certainty_baselines_against_hand_computed_binary_losses():
    head = nn.Linear(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, -1.0]]))
        head.bias.copy_(torch.tensor([0.5]))
    queries = np.array([[3.0, 0.0], [0.0, 0.0], [0.0, 2.0], [-4.0, 1.0]])
    preds = [1, 1, 0, 0]
    logits = queries @ np.array([1.0, -1.0]) + 0.5  # 3.5, 0.5, -1.5, -4.5
    losses = np.array([bce(z, y) for z, y in zip(logits, preds)])
    ev = make_evidence(np.zeros((10, 2)), queries, preds, head)
    most = MostCertain()(ev)
    least = LeastCertain()(ev)
    np.testing.assert_allclose(least, losses, rtol=1e-6)
    np.testing.assert_allclose(most, -losses, rtol=1e-6)
    assert np.argsort(-most).tolist() == [3, 0, 2, 1]  # ascending loss
    assert np.argsort(-least).tolist() == [1, 2, 0, 3]  # descending loss


def test_certainty_uses_the_given_predicted_label_with_multiclass_cross_entropy():
    head = nn.Linear(2, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        head.bias.zero_()
    queries = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    preds = [0, 1, 2]
    z = queries @ np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]).T
    want = np.array([np.log(np.exp(z[i]).sum()) - z[i, preds[i]] for i in range(3)])
    ev = make_evidence(np.zeros((10, 2)), queries, preds, head)
    np.testing.assert_allclose(LeastCertain()(ev), want, rtol=1e-6)


def test_random_uses_evidence_rng():
    ev = make_evidence(np.zeros((5, 2)), np.zeros((7, 2)), np.zeros(7), seed=11,
                       granted=frozenset({"queries"}))
    scores = RandomRanker()(ev)
    np.testing.assert_array_equal(scores, np.random.default_rng(11).random(7))
    other = RandomRanker()(make_evidence(np.zeros((5, 2)), np.zeros((7, 2)), np.zeros(7), seed=12,
                                         granted=frozenset({"queries"})))
    assert not np.array_equal(scores, other)


def test_registry_and_contract():
    names = {"max-knn", "min-knn", "most-certain", "least-certain", "random"}
    assert names <= set(target_rankers.names())
    for name in names:
        entry = target_rankers.entry(name)
        assert entry.description
        ranker = entry.obj()
        assert isinstance(ranker, TargetRanker)
        assert "queries" in ranker.requires and set(ranker.requires) <= set(NEEDS)
        with pytest.raises(ConfigError, match="unknown config key"):
            entry.obj(not_a_param=1)


def test_withheld_evidence_and_bad_output_shape_are_errors(cluster):
    train, queries = cluster
    ev = make_evidence(train, queries, np.zeros(len(queries)), granted=frozenset({"queries"}))
    with pytest.raises(MissingEvidence):
        MaxKNNDistance()(ev)

    @dataclass
    class _Cfg:
        pass

    class Broken(TargetRanker):
        Config = _Cfg

        def rank(self, evidence):
            return np.zeros(3)

    with pytest.raises(ValueError, match="one score per query"):
        Broken()(ev)

    class BadNeeds(Broken):
        requires = frozenset({"queries", "telepathy"})

    with pytest.raises(TypeError, match="unknown needs"):
        BadNeeds()
