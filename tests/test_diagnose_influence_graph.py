"""The influence-graph diagnosis tool's independent float64 pieces agree with the engine."""
from __future__ import annotations

import types

import numpy as np
import torch

from benchmark.tools.diagnose_influence_graph import _edge_average, brute_force_block, per_example_grad_norms
from benchmark.training import TrainConfig, train
from benchmark.trial import make_model_factory
from defenses.influence.pairwise import pairwise_influence


def _tiny_trial():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    factory = make_model_factory({"name": "resnet32", "params": {"width": 4, "blocks_per_stage": 1}}, (3, 8, 8), 3)
    torch.manual_seed(0)
    run = train(factory(), x, y, TrainConfig(epochs=2, batch_size=16, lr=0.05, checkpoints_per_epoch=1),
                generator=torch.Generator().manual_seed(0))
    return types.SimpleNamespace(model_factory=factory, run=run, train=types.SimpleNamespace(inputs=x, labels=y))


def test_brute_force_block_matches_the_engines_pairwise_influence(one_thread):
    p = _tiny_trial()
    I = pairwise_influence(p.model_factory, p.run.final, p.train.inputs, p.train.labels, layers=["classifier"],
                           damping=0.01, dtype=np.float64)
    rows = np.array([0, 5, 17, 30])
    bf = brute_force_block(p, rows, rows, 0.01)
    np.testing.assert_allclose(I[np.ix_(rows, rows)], bf, rtol=1e-5, atol=1e-7 * np.abs(bf).max())


def test_closed_form_gradient_norms_match_autograd(one_thread):
    p = _tiny_trial()
    g_loss, g_f = per_example_grad_norms(p)
    model = p.model_factory()
    model.load_state_dict(p.run.final)
    model.eval()
    for i in (0, 9):
        out = model(p.train.inputs[i:i + 1])
        for value, expect in ((torch.nn.functional.cross_entropy(out, p.train.labels[i:i + 1]), g_loss[i]),
                              (torch.softmax(out, 1)[0, p.train.labels[i]], g_f[i])):
            grads = torch.autograd.grad(value, list(model.classifier.parameters()), retain_graph=True)
            assert abs(float(torch.sqrt(sum((gr ** 2).sum() for gr in grads))) - expect) < 1e-4 * max(1.0, expect)


def test_edge_average_is_the_mean_over_off_diagonal_pairs():
    S = np.arange(16, dtype=float).reshape(4, 4)
    S = (S + S.T) / 2
    idx = np.array([0, 2, 3])
    pairs = [S[i, j] for i in idx for j in idx if i < j]
    assert _edge_average(S, idx) == np.mean(pairs)
