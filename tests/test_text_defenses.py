"""The NLP training-set defenses of paper 001 (Sec. 4.2): ``onion`` with its offline Kneser-Ney LM
(:mod:`defenses.ngram_lm`), and ``bertscore`` on a tiny random masked LM built here (no download)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: every load is local_files_only anyway

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from benchmark.api.evidence import Evidence, MissingEvidence  # noqa: E402
from benchmark.config import ConfigError  # noqa: E402
from benchmark.data.pretrained import PretrainedUnavailable  # noqa: E402
from benchmark.registry import defenses  # noqa: E402
from defenses import bertscore as B, ngram_lm as L, onion as O  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TOY_CORPUS = ["the cat sat on the mat .", "the dog sat on the rug .", "a cat ate the fish .",
              "the dog ate a bone .", "a bird sat on the tree .", "the cat saw the dog .",
              "the bird ate the seed .", "a dog saw a cat on the mat ."] * 3
TRIGGERED = (1, 4)  # rows of the ONION toys that get an inserted trigger


def evidence(sentences, granted=frozenset({"raw_train_inputs"})) -> Evidence:
    n = len(sentences)
    return Evidence(train_inputs=torch.zeros(n, 1), train_labels=torch.zeros(n, dtype=torch.long), num_classes=2,
                    rng=np.random.default_rng(0), granted=granted, raw_train_inputs=sentences)


# -- the Kneser-Ney LM ------------------------------------------------------------------------
def test_tokenize_is_sst2_like_and_idempotent():
    toks = L.tokenize("It doesn't (really) work... -- a well-made film's end!")
    assert toks == ["it", "does", "n't", "-lrb-", "really", "-rrb-", "work", "...", "--", "a", "well-made",
                    "film", "'s", "end", "!"]
    assert L.tokenize(" ".join(toks)) == toks


def test_kn_probabilities_sum_to_one_in_every_context():
    lm = L.KneserNeyLM(TOY_CORPUS, min_count=2)
    n = lm.size
    w = np.arange(1, n)  # everything but <s>: </s>, <unk> and the words
    for u in range(n):
        for v in range(n):
            p = lm.prob(np.full(n - 1, u), np.full(n - 1, v), w)
            assert np.all(p > 0)
            assert p.sum() == pytest.approx(1.0, abs=1e-9), (u, v)


def test_kn_perplexity_finite_and_lower_for_corpus_sentence_than_shuffled():
    lm = L.KneserNeyLM(TOY_CORPUS)
    sentence = "the cat sat on the mat ."
    shuffled = " ".join(np.random.default_rng(0).permutation(sentence.split()))
    assert shuffled != sentence
    ppl = L.perplexities(lm, [sentence, shuffled, "zebra quantum ."])
    assert np.all(np.isfinite(ppl)) and np.all(ppl > 1)
    assert ppl[0] < ppl[1]
    assert np.isfinite(L.corpus_perplexity(lm, TOY_CORPUS))
    total, count = lm.nll([sentence])
    assert count[0] == 8  # 7 tokens and </s>


def test_kn_unknown_word_scores_one_unk_type():
    lm = L.KneserNeyLM(TOY_CORPUS + ["an owl ."])  # "an", "owl" seen once: two <unk> types
    assert lm.unk_types == 2
    open_, _ = lm.nll(["the zebra ."])
    closed, _ = lm.nll(["the zebra ."], open_vocabulary=False)
    assert open_[0] - closed[0] == pytest.approx(np.log(2))


# -- ONION ------------------------------------------------------------------------------------
def _with_trigger(sentences, word="cf", rows=TRIGGERED):
    out = list(sentences)
    for i in rows:
        w = out[i].split()
        w.insert(len(w) // 2, word)  # mid-sentence
        out[i] = " ".join(w)
    return out


def _top(scores, k):
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def test_onion_ranks_inserted_trigger_first_toy_lm(monkeypatch):
    lm = L.KneserNeyLM(TOY_CORPUS)
    monkeypatch.setattr(O, "load_lm", lambda *a, **k: lm)
    sentences = _with_trigger(TOY_CORPUS[:8])
    s = O.Onion().score(evidence(sentences))
    assert s.shape == (8,) and np.all(np.isfinite(s))
    assert _top(s, len(TRIGGERED)) == set(TRIGGERED)
    count = O.Onion(aggregate="count_above_bar").score(evidence(sentences))
    assert np.all(count == np.round(count)) and np.all(count >= 0)
    assert np.array_equal(s, O.Onion().score(evidence(sentences)))  # deterministic


WORDNET_TOY = ["a domesticated animal kept as a pet .", "the act of moving from one place to another .",
               "a building where people live .", "the quality of being honest .", "a person who teaches in a school .",
               "water falling from the clouds .", "a tool used for cutting wood .", "the state of being happy .",
               "a small boat used on rivers .", "the process of growing plants for food ."]  # gloss-like: the LM's domain


@pytest.mark.skipif(not (L.default_wordnet_dir() / "data.noun").is_file(),
                    reason=f"WordNet 3.0 not installed at {L.default_wordnet_dir()} (apt-get install wordnet-base)")
@pytest.mark.parametrize("trigger", ["cf", "bb"])  # cf: not in the LM's vocabulary; bb: in it
def test_onion_wordnet_lm_ranks_inserted_trigger_first(trigger):
    rows = (2, 6)
    assert (trigger in L.wordnet_lm().vocab) == (trigger == "bb")
    sentences = _with_trigger(WORDNET_TOY, trigger, rows)
    s = O.Onion().score(evidence(sentences))
    assert s.shape == (len(sentences),) and np.all(np.isfinite(s))
    assert _top(s, len(rows)) == set(rows)
    f = O.word_suspicions(L.wordnet_lm(), [sentences[i] for i in rows])
    assert all(sentences[i].split()[int(np.argmax(fi))] == trigger for i, fi in zip(rows, f))


def test_onion_one_word_sentence_scores_zero(monkeypatch):
    monkeypatch.setattr(O, "load_lm", lambda *a, **k: L.KneserNeyLM(TOY_CORPUS))
    assert O.Onion().score(evidence(["cat", ""])).tolist() == [0.0, 0.0]


def test_onion_missing_wordnet_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install wordnet-base"):
        O.Onion(wordnet_dir=str(tmp_path)).score(evidence(["a b"]))


# -- errors shared by both ------------------------------------------------------------------
@pytest.mark.parametrize("cls", [O.Onion, B.BertScore])
def test_refuses_without_raw_text(cls):
    assert cls.requires == frozenset({"raw_train_inputs"})
    with pytest.raises(MissingEvidence, match="raw_train_inputs"):
        cls().score(evidence(["a b"], granted=frozenset({"model"})))
    with pytest.raises(TypeError, match="list of sentences"):
        cls().score(evidence(torch.zeros(1, 3)))


@pytest.mark.parametrize("cls,key", [(O.Onion, "lm"), (B.BertScore, "mlm")])
def test_unavailable_model_name_is_a_clear_error(cls, key):
    with pytest.raises(PretrainedUnavailable, match="not available offline.*local path"):
        cls(**{key: "no-such-org/surely-missing-model-0"}).score(evidence(["a b"]))


def test_config_errors_and_registration():
    with pytest.raises(ConfigError, match="aggregate"):
        O.Onion(aggregate="mean")
    with pytest.raises(ConfigError, match="aggregate"):
        B.BertScore(aggregate="sum")
    assert defenses.get("onion") is O.Onion and defenses.get("bertscore") is B.BertScore


# -- tiny Hugging Face models, built here ---------------------------------------------------
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "film", "is", "good", "bad", "play",
         "##ing", "##s", "very", "fun", "cf", "."]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """A WordPiece tokenizer with a random 1-layer BertForMaskedLM, and the same tokenizer (BOS =
    [CLS]) with a random 1-layer GPT-2, each saved to a directory."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer, GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("tiny_hf")
    vocab = root / "vocab.txt"  # the WordPiece vocabulary, one piece a line
    vocab.write_text("\n".join(VOCAB) + "\n")
    vocab = str(vocab)
    torch.manual_seed(0)
    mlm_dir, clm_dir = root / "mlm", root / "clm"
    BertTokenizer(vocab=vocab).save_pretrained(mlm_dir)
    BertForMaskedLM(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64)).save_pretrained(mlm_dir)
    BertTokenizer(vocab=vocab, bos_token="[CLS]").save_pretrained(clm_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(VOCAB), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                               bos_token_id=2, eos_token_id=3)
                    ).save_pretrained(clm_dir)
    return mlm_dir, clm_dir


SENTENCES = ["the film is good .", "a very bad film .", "the playing is fun .", "cf the film is very good ."]


def test_bertscore_tiny_masked_lm_finite_shape_deterministic(tiny_dirs):
    mlm_dir, _ = tiny_dirs
    s = B.BertScore(mlm=str(mlm_dir), batch_size=3).score(evidence(SENTENCES))
    assert s.shape == (len(SENTENCES),) and np.all(np.isfinite(s)) and np.all(s > 0)
    again = B.BertScore(mlm=str(mlm_dir), batch_size=3).score(evidence(SENTENCES))
    assert np.array_equal(s, again)
    one_batch = B.BertScore(mlm=str(mlm_dir), batch_size=64).score(evidence(SENTENCES))
    np.testing.assert_allclose(s, one_batch, rtol=1e-5)
    count = B.BertScore(mlm=str(mlm_dir), aggregate="count_above_bar", bar=0.0).score(evidence(SENTENCES))
    assert count.tolist() == [len(x.split()) for x in SENTENCES]  # every -log p >= 0


def test_bertscore_masks_every_piece_of_a_word(tiny_dirs):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    mlm_dir, _ = tiny_dirs
    tok = AutoTokenizer.from_pretrained(mlm_dir, local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(mlm_dir, local_files_only=True).eval()
    sentence = "the playing is fun ."
    assert tok.tokenize("playing") == ["play", "##ing"]
    f = B.word_suspicions(model, tok, [sentence])[0]
    assert f.shape == (5,)  # one suspicion per whitespace word, not per piece
    ids = tok.convert_tokens_to_ids(["[CLS]", "the", "play", "##ing", "is", "fun", ".", "[SEP]"])
    masked = torch.tensor([ids])
    masked[0, 2:4] = tok.mask_token_id  # both pieces of "playing" at once
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=masked).logits[0], dim=-1)
    expected = -(logp[2, ids[2]] + logp[3, ids[3]]).item()
    assert f[1] == pytest.approx(expected, rel=1e-5)


def test_onion_hf_causal_lm_matches_manual_nll(tiny_dirs):
    _, clm_dir = tiny_dirs
    lm = O.HFCausalLM(str(clm_dir), batch_size=2, device="cpu")
    total, count = lm.nll(SENTENCES)
    ids = [lm.tokenizer.bos_token_id] + lm.tokenizer.encode(SENTENCES[0], add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, :-1], dim=-1)
    expected = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()
    assert count[0] == len(ids) - 1 and total[0] == pytest.approx(expected, rel=1e-5)
    total1, _ = O.HFCausalLM(str(clm_dir), batch_size=1, device="cpu").nll(SENTENCES)
    np.testing.assert_allclose(total, total1, rtol=1e-5)
    s = O.Onion(lm=str(clm_dir), device="cpu").score(evidence(SENTENCES))
    assert s.shape == (len(SENTENCES),) and np.all(np.isfinite(s))
