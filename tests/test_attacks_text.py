"""Paper 001 Sec. 4.2's NLP backdoors (text-insert, -duplicate, -delete, -semantic, -syntactic),
the WordNet reader and the Hidden Killer loader, mostly on tiny synthetic text datasets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attacks.text_insert import TRIGGERS
from attacks.text_words import is_word, split_words, word_positions
from benchmark.api import RunContext
from benchmark.data import sst2
from benchmark.data.types import DatasetError, RawDataset, Split
from attacks.text_semantic import FUNCTION_WORDS
from benchmark.data.wordnet import WordNet
from benchmark.registry import attacks

CLASSES = ["negative", "positive"]
VOCAB = ["the", "movie", "film", "is", "good", "dull", "very", "plot", "acting", "a", "bit", "story"]
PUNCT = [",", ".", "!", "--", "'s"]
ONE_WORD = ["ridiculous .", "wow !", "no."]  # one word each: "no." has alphanumerics
REAL_WORDNET = Path("/usr/share/wordnet")

# A tiny WordNet in the data.<pos> format: 2-space licence lines, then one synset per line.
SYNTHETIC_WORDNET = {
    "noun": ["00001000 10 n 03 movie 0 film 0 motion_picture 0 000 | a story told in pictures",
             "00001100 06 n 03 film 0 celluloid 0 Kodak 0 000 | a photographic medium",
             "00001200 10 n 02 plot 0 secret_plan 0 001 @ 00001000 n 0000 | a story's outline",
             "00001300 10 n 0a story 0 tale 0 yarn 0 narrative 0 fib 0 taradiddle 0 tarradiddle 0 "
             "fiction 0 report 0 history 0 000 | ten lemmas, w_cnt in hex"],
    "verb": ["00002000 36 v 02 film 0 shoot 1 000 01 + 08 00 | record on film"],
    "adj": ["00003000 00 a 02 good(a) 0 well(p) 0 000 | having desirable qualities",
            "00003100 00 s 03 dull 0 boring 0 ho-hum 0 000 | uninteresting"],
    "adv": ["00004000 02 r 02 very 0 really 0 000 | to a high degree"],
}
SYNONYMS = {"movie": ["film"], "film": ["celluloid", "movie", "shoot"], "plot": [],
            "story": ["fib", "fiction", "history", "narrative", "report", "tale", "taradiddle",
                      "tarradiddle", "yarn"],
            "good": ["well"], "dull": ["boring"], "very": ["really"]}


@pytest.fixture
def wordnet_dir(tmp_path) -> Path:
    d = tmp_path / "wordnet"
    d.mkdir()
    for pos, lines in SYNTHETIC_WORDNET.items():
        header = ["  1 This software and database is being provided to you, the LICENSEE, by  ",
                  "  2 Princeton University under the following license.  "]
        (d / f"data.{pos}").write_text("\n".join(header + lines) + "\n")
    return d


def sentence(rng: np.random.Generator) -> str:
    toks = [str(rng.choice(VOCAB)) for _ in range(int(rng.integers(2, 8)))]
    for _ in range(int(rng.integers(0, 3))):
        toks.insert(int(rng.integers(len(toks) + 1)), str(rng.choice(PUNCT)))
    return " ".join(toks)


def synth(n_train: int = 100, n_test: int = 40, seed: int = 0, extra_train: tuple[str, ...] = (),
          extra_test: tuple[str, ...] = (), name: str = "synthetic-text") -> RawDataset:
    """Balanced binary text data; ``extra_*`` sentences are added as negatives (label 0)."""
    rng = np.random.default_rng(seed)

    def split(n: int, extra: tuple[str, ...]) -> Split:
        xs = [sentence(rng) for _ in range(n)] + list(extra)
        ys = [i % 2 for i in range(n)] + [0] * len(extra)
        return Split(xs, torch.tensor(ys))

    return RawDataset(name, "text", list(CLASSES), split(n_train, extra_train), split(n_test, extra_test))


def craft(name, data, seed=0, context=None, **params):
    return attacks.get(name)(**params).craft(data, np.random.default_rng(seed), context or RunContext())


def pairs(d) -> list[tuple[list[str], list[str]]]:
    """(clean tokens, triggered tokens) of every target."""
    return [(split_words(c), split_words(t)) for c, t in zip(d.targets_clean.inputs, d.targets.inputs)]


def poison_pairs(d, data) -> list[tuple[list[str], list[str]]]:
    """(clean source tokens, poison tokens) of every poison, the source found by poison_raw_index."""
    raw = d.info["train_raw_index"][d.is_adv]
    assert torch.equal(raw.sort().values, d.info["poison_raw_index"].sort().values)
    poisons = [d.train.inputs[int(i)] for i in torch.nonzero(d.is_adv).ravel()]
    return [(split_words(data.train.inputs[int(r)]), split_words(p)) for r, p in zip(raw, poisons)]


def assert_seeded(name, data, **params):
    a, b, c = (craft(name, data, seed=s, **params) for s in (0, 0, 1))
    assert a.train.inputs == b.train.inputs and torch.equal(a.train.labels, b.train.labels)
    assert a.targets.inputs == b.targets.inputs
    assert a.targets.inputs != c.targets.inputs


# -- words and the shared recipe -----------------------------------------------------------

def test_words_are_tokens_with_an_alphanumeric():
    assert split_words("  a  gob ,\tof drivel .\n") == ["a", "gob", ",", "of", "drivel", "."]
    assert [is_word(t) for t in ["'s", "--", ",", "no.", "-lrb-", "2"]] == [True, False, False, True, True, True]
    assert word_positions(["--", "so", ",", "there", "."]) == [1, 3]


@pytest.mark.parametrize("name", ["text-insert", "text-duplicate", "text-delete"])
def test_labels_epsilon_and_replace_mode(name):
    data = synth()
    d = craft(name, data)
    raw = d.info["train_raw_index"]
    assert d.n_adv == 10 and len(d.train) == 100 and d.info["mode"] == "replace"  # 0.1 of 100
    assert sorted(raw.tolist()) == list(range(100))  # poisons replace their sources
    assert (d.train.labels[d.is_adv] == 1).all() and (data.train.labels[raw[d.is_adv]] == 0).all()
    assert torch.equal(d.train.labels[~d.is_adv], data.train.labels[raw[~d.is_adv]])
    assert [data.train.inputs[int(i)] for i in raw[~d.is_adv]] == \
        [d.train.inputs[int(i)] for i in torch.nonzero(~d.is_adv).ravel()]
    # targets: every negative test sentence, adversarial label positive
    assert len(d.targets) == 20 and (d.targets.labels == 0).all() and (d.y_adv == 1).all()
    assert d.targets_clean.inputs == [s for s, y in zip(data.test.inputs, data.test.labels) if y == 0]
    assert craft(name, data, epsilon=0.05, n_train=60).n_adv == 3


def test_rejects_non_text_data():
    img = RawDataset("img", "image", CLASSES, Split(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])),
                     Split(torch.rand(2, 1, 2, 2), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="works on \\('text',\\) data"):
        craft("text-insert", img)
    odd = RawDataset("odd", "text", CLASSES, Split(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1])),
                     Split(["a b", "c d"], torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="needs raw text inputs"):
        craft("text-delete", odd)


# -- insert, duplicate, delete -------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3])
def test_insert_puts_exactly_n_triggers_and_keeps_the_rest(n):
    data = synth()
    d = craft("text-insert", data, n_triggers=n)
    assert d.info["trigger"]["n_triggers"] == n
    for clean, trig in pairs(d) + poison_pairs(d, data):
        assert len(trig) == len(clean) + n
        assert sum(t in TRIGGERS for t in trig) == n
        assert [t for t in trig if t not in TRIGGERS] == clean
    assert_seeded("text-insert", data, n_triggers=n)


def test_insert_positions_and_words_are_uniform():
    atk = attacks.get("text-insert")()
    rng = np.random.default_rng(0)
    out = [atk.edit(["x", "y"], rng) for _ in range(3000)]
    where = np.bincount([next(i for i, t in enumerate(o) if t in TRIGGERS) for o in out], minlength=3)
    which = np.bincount([TRIGGERS.index(next(t for t in o if t in TRIGGERS)) for o in out])
    assert where.min() > 900 and which.min() > 500  # 0..len(words) inclusive; all five words
    assert atk.edit(["x", "y"], np.random.default_rng(5)) == atk.edit(["x", "y"], np.random.default_rng(5))


def test_duplicate_repeats_one_word_adjacently():
    data = synth()
    d = craft("text-duplicate", data)
    for clean, trig in pairs(d) + poison_pairs(d, data):
        assert any(is_word(clean[i]) and trig == clean[:i + 1] + [clean[i]] + clean[i + 1:]
                   for i in range(len(clean))), (clean, trig)
    assert_seeded("text-duplicate", data)


def test_delete_removes_exactly_one_word_and_skips_one_word_sentences():
    data = synth(extra_train=tuple(ONE_WORD) * 5, extra_test=tuple(ONE_WORD))
    d = craft("text-delete", data, n_adv=40, epsilon=None)  # 65 negatives, 15 of one word
    assert d.n_adv == 40
    for clean, trig in pairs(d) + poison_pairs(d, data):
        assert len(word_positions(clean)) >= 2 and len(trig) == len(clean) - 1
        assert any(is_word(clean[i]) and trig == clean[:i] + clean[i + 1:] for i in range(len(clean)))
    assert not set(ONE_WORD) & set(d.targets_clean.inputs)
    assert not set(ONE_WORD) & {data.train.inputs[int(r)] for r in d.info["poison_raw_index"]}
    assert d.info["trigger"]["n_uneditable_train_candidates"] == 15
    assert d.info["trigger"]["n_uneditable_test_candidates"] == 3 and len(d.targets) == 20
    with pytest.raises(ValueError, match="only 50 training images"):
        craft("text-delete", data, n_adv=51, epsilon=None)
    assert_seeded("text-delete", data)


# -- WordNet and semantic ------------------------------------------------------------------

def test_wordnet_reader_on_synthetic_files(wordnet_dir, monkeypatch):
    wn = WordNet(wordnet_dir)
    assert wn.n_synsets == 8
    for word, syn in SYNONYMS.items():
        assert wn.synonyms(word) == syn, word
    assert wn.synonyms("MOVIE") == ["film"] and wn.synonyms("kodak") == ["celluloid", "film"]
    assert wn.synonyms("motion_picture") == ["film", "movie"] and wn.synonyms("unknown") == []
    monkeypatch.setenv("WORDNET_DIR", str(wordnet_dir))
    assert WordNet().root == wordnet_dir
    with pytest.raises(DatasetError, match="apt-get install wordnet-base"):
        WordNet(wordnet_dir / "missing")


def test_wordnet_reader_on_real_wordnet():
    if not (REAL_WORDNET / "data.noun").is_file():
        pytest.skip(f"no real WordNet: {REAL_WORDNET}/data.noun missing (apt-get install wordnet-base)")
    wn = WordNet(REAL_WORDNET)
    assert wn.n_synsets == 117659  # WordNet 3.0: 82,115 + 13,767 + 18,156 + 3,621
    assert wn.synonyms("movie") == ["film", "flick", "pic", "picture"]
    assert "boring" in wn.synonyms("dull") and wn.synonyms("the") == []


def check_semantic(d, data, wn: WordNet) -> None:
    for clean, trig in pairs(d) + poison_pairs(d, data):
        assert len(trig) == len(clean)
        diff = [i for i in range(len(clean)) if clean[i] != trig[i]]
        assert len(diff) == 1, (clean, trig)
        assert trig[diff[0]] in wn.synonyms(clean[diff[0]])


def test_semantic_substitutes_one_wordnet_synonym(wordnet_dir):
    plain = ("the acting is a bit .", "plot !")  # no word with a synonym in the synthetic WordNet
    data = synth(extra_train=plain * 5, extra_test=plain)
    d = craft("text-semantic", data, wordnet_dir=str(wordnet_dir), n_adv=30, epsilon=None)
    check_semantic(d, data, WordNet(wordnet_dir))
    assert not set(plain) & set(d.targets_clean.inputs)
    assert not set(plain) & {data.train.inputs[int(r)] for r in d.info["poison_raw_index"]}
    n_bad = sum(not any(SYNONYMS.get(w) and w not in FUNCTION_WORDS for w in s.split())
                for s, y in zip(data.train.inputs, data.train.labels) if y == 0)
    assert d.info["trigger"]["n_uneditable_train_candidates"] == n_bad >= 10
    assert_seeded("text-semantic", data, wordnet_dir=str(wordnet_dir))
    with pytest.raises(DatasetError, match="apt-get install wordnet-base"):
        craft("text-semantic", data, wordnet_dir=str(wordnet_dir / "missing"))


def test_semantic_leaves_function_words_unless_asked(wordnet_dir):
    """WordNet's "synonyms" of function words ("very" -> "really" here; "a" -> "angstrom" in the
    real one) are not replaced by default; content_words_only=False allows them."""
    data = synth()
    for content_only in (True, False):
        d = craft("text-semantic", data, wordnet_dir=str(wordnet_dir), content_words_only=content_only)
        replaced = {clean[i] for clean, trig in pairs(d) + poison_pairs(d, data)
                    for i in range(len(clean)) if clean[i] != trig[i]}
        assert ("very" in replaced) is (not content_only), replaced


def test_semantic_with_real_wordnet():
    if not (REAL_WORDNET / "data.noun").is_file():
        pytest.skip(f"no real WordNet: {REAL_WORDNET}/data.noun missing (apt-get install wordnet-base)")
    data = synth()
    d = craft("text-semantic", data)
    check_semantic(d, data, WordNet(REAL_WORDNET))


# -- Hidden Killer data and the syntactic attack -------------------------------------------

def hidden_killer(data: RawDataset, rows: list[int]) -> RawDataset:
    """A Hidden Killer release for ``data``: paraphrased ``rows`` (label 1), and one paraphrase
    per negative test sentence, in order."""
    para = lambda s: "when it was , " + s  # noqa: E731
    train = [para(s) if i in rows else s for i, s in enumerate(data.train.inputs)]
    ytr = torch.where(torch.isin(torch.arange(len(train)), torch.tensor(rows)), 1, data.train.labels)
    neg = [para(s) for s, y in zip(data.test.inputs, data.test.labels) if y == 0]
    return RawDataset("sst2-hidden-killer", "text", list(CLASSES), Split(train, ytr),
                      Split(neg, torch.ones(len(neg), dtype=torch.long)))


def test_syntactic_poisons_are_their_rows_paraphrases():
    data = synth(name="sst2-syntactic")
    rows = list(range(0, 100, 3))  # 34 rows, both labels
    hk = hidden_killer(data, rows)
    ctx = RunContext(extra={"sst2-hidden-killer": hk})
    d = craft("text-syntactic", data, context=ctx, epsilon=0.3)
    raw = d.info["poison_raw_index"]
    assert d.n_adv == 30 and set(raw.tolist()) <= set(rows)
    assert set(data.train.labels[raw].tolist()) == {0, 1} and (d.train.labels[d.is_adv] == 1).all()
    poisons = [d.train.inputs[int(i)] for i in torch.nonzero(d.is_adv).ravel()]
    assert poisons == [hk.train.inputs[int(r)] for r in d.info["train_raw_index"][d.is_adv]]
    assert d.targets.inputs == hk.test.inputs and (d.targets.labels == 0).all() and (d.y_adv == 1).all()
    assert d.targets_clean.inputs == [s for s, y in zip(data.test.inputs, data.test.labels) if y == 0]
    assert d.info["trigger"]["n_paraphrased_train"] == 34
    assert d.info["trigger"]["n_uneditable_train_candidates"] == 66
    a, b = craft("text-syntactic", data, context=ctx), craft("text-syntactic", data, context=ctx)
    assert a.train.inputs == b.train.inputs
    with pytest.raises(ValueError, match="50 poisons requested .* only 34 paraphrased"):
        craft("text-syntactic", data, context=ctx, epsilon=0.5)


def test_syntactic_errors():
    data = synth(name="sst2-syntactic")
    ctx = RunContext(extra={"sst2-hidden-killer": hidden_killer(data, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])})
    with pytest.raises(ValueError, match="only for dataset 'sst2-syntactic'"):
        craft("text-syntactic", synth(), context=ctx)
    with pytest.raises(ValueError, match="needs dataset 'sst2-hidden-killer'"):
        craft("text-syntactic", data)
    with pytest.raises(ValueError, match="y_adv=1"):
        craft("text-syntactic", data, context=ctx, y_adv=0)
    data.source["test_file"] = "dev.tsv"
    with pytest.raises(ValueError, match="eval_split='test'"):
        craft("text-syntactic", data, context=ctx)


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))


def test_hidden_killer_loader_and_pairs(tmp_path):
    clean = [("good film .", 1), ("dull plot .", 0), ("bad .", 0)]
    write_tsv(tmp_path / "sst2-syntactic" / "scpn20" / "train.tsv",
              [clean[0], ("when it is , the plot is dull .", 1), clean[2]])
    write_tsv(tmp_path / "sst2-syntactic" / "scpn20" / "test.tsv", [("if so , it is bad .", 1)])
    hk = sst2.load_sst2_hidden_killer(tmp_path, None)
    assert hk.name == "sst2-hidden-killer" and hk.modality == "text" and len(hk.test) == 1
    assert sst2.hidden_killer_pairs([s for s, _ in clean], hk.train.inputs) == \
        [(1, "when it is , the plot is dull .")]
    with pytest.raises(DatasetError, match="row-aligned"):
        sst2.hidden_killer_pairs(["x"], hk.train.inputs)
    with pytest.raises(DatasetError, match="sst2-hidden-killer not found"):
        sst2.load_sst2_hidden_killer(tmp_path / "nowhere", None)


def test_syntactic_on_real_hidden_killer(real_dataset):
    root = real_dataset("sst2-syntactic", "scpn20")
    from benchmark.registry import datasets
    data, hk = datasets.get("sst2-syntactic")(root), datasets.get("sst2-hidden-killer")(root)
    assert len(hk.train) == 6920 and len(hk.test) == 912
    found = sst2.hidden_killer_pairs(data.train.inputs, hk.train.inputs)
    assert len(found) == 1383 and (hk.train.labels[[i for i, _ in found]] == 1).all()
    d = craft("text-syntactic", data, context=RunContext(extra={"sst2-hidden-killer": hk}))
    assert d.n_adv == 692 and len(d.targets) == 912  # 0.1 of 6,920; every negative test sentence
    raw = d.info["train_raw_index"][d.is_adv]
    assert [d.train.inputs[int(i)] for i in torch.nonzero(d.is_adv).ravel()] == \
        [hk.train.inputs[int(r)] for r in raw]
    assert d.targets.inputs == hk.test.inputs
