"""``onion``: ONION (Qi et al. 2021, "ONION: a simple and effective defense against textual backdoor
attacks") used as a training-set filter, as paper 001 does (Sec. 4.2, Table 2).

For a training sentence ``s = w_1 .. w_n`` (whitespace words), ``p0`` is the perplexity of ``s``
under a causal language model and ``p_i`` that of ``s`` without ``w_i``; word ``i``'s suspicion is
``f_i = p0 - p_i`` (removing a trigger word lowers the perplexity a lot).  A sentence's score
(``aggregate``) is ``max_i f_i`` (``"max"``, the reference notes' training-set reading) or the
number of words with ``f_i >= bar`` (``"count_above_bar"``: the words OpenBackdoor's
``ONIONDefender`` would delete, bar 0).  Sentences of fewer than two words have nothing to delete
and score 0 (ours).

Language model (``lm``):

* ``"wordnet-kn"`` (offline default, ours): the Kneser-Ney trigram model of
  :mod:`defenses.ngram_lm`, trained on WordNet 3.0's glosses -- a real LM that never saw the
  attacked training set.  Perplexity counts every token and ``</s>``; an unknown word is one of
  the ``K`` word types ``<unk>`` stands for.  Caveat (measured, ours): glosses are far from movie
  reviews (SST-2 dev perplexity about 1,100, 7.5 % of tokens out of vocabulary), so names and film
  words look about as improbable as an inserted trigger and this ONION is a much weaker filter than
  one on GPT-2.
* any other value: a Hugging Face causal LM, by hub name in the local cache (``"gpt2"``, the
  paper's) or a local directory (:mod:`benchmark.data.pretrained`; never downloaded).  Texts are
  tokenised alone, truncated to ``max_length`` tokens, and prefixed by the tokenizer's BOS token
  when it has one (GPT-2: ``<|endoftext|>``; ours: so the first word is scored too); perplexity is
  ``exp`` of the mean NLL of the tokens after it.

``python -m defenses.ngram_lm --perplexity FILE --lm NAME`` measures an LM's corpus perplexity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from benchmark.api import Defense, Evidence
from benchmark.config import ConfigError
from benchmark.registry import defenses

if TYPE_CHECKING:
    from defenses.ngram_lm import SentenceLM

AGGREGATES = ("max", "count_above_bar")
OFFLINE_LM = "wordnet-kn"


@dataclass
class OnionConfig:
    lm: str = OFFLINE_LM  # ours: offline stand-in for paper 001's GPT-2 (Sec. 4.2); "gpt2" = the paper's
    aggregate: str = "max"  # reference notes (attacks_datasets.md Sec. 8): sentence score = max_i f_i
    bar: float = 0.0  # OpenBackdoor ONIONDefender default (used by aggregate="count_above_bar")
    batch_size: int = 32  # OpenBackdoor ONIONDefender default (HF LMs; no effect on the scores)
    max_length: int = 96  # OpenBackdoor ONIONDefender default, per reference notes Sec. 8 (HF LMs: tokens per text)
    wordnet_dir: str | None = None  # ours: None -> $WORDNET_DIR or /usr/share/wordnet (wordnet-kn only)
    device: str = "auto"  # ours: "auto" = cuda when available, else cpu (Hugging Face LMs)

    def __post_init__(self) -> None:
        check_aggregate(self.aggregate)
        if self.batch_size < 1 or self.max_length < 2:
            raise ConfigError(f"batch_size must be >= 1 and max_length >= 2, got {self.batch_size}, "
                              f"{self.max_length}")


def check_aggregate(aggregate: str) -> None:
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")


def train_sentences(evidence: Evidence, what: str) -> list[str]:
    """The training sentences (``raw_train_inputs``), checked to be one str per training row."""
    raw = evidence.raw_inputs()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not all(isinstance(s, str) for s in raw):
        raise TypeError(f"{what} scores text, but raw_train_inputs holds {type(raw).__name__}, not a list of "
                        f"sentences (str); run it on a text dataset")
    if len(raw) != len(evidence.train_labels):
        raise ValueError(f"{what}: {len(raw)} raw training sentences for {len(evidence.train_labels)} "
                         f"training rows; raw_train_inputs must be aligned with train_inputs")
    return list(raw)


def aggregate_words(f: np.ndarray, aggregate: str, bar: float) -> float:
    """A sentence's score from its words' suspicions ``f`` (non-finite ones ignored; none -> 0)."""
    f = f[np.isfinite(f)]
    if f.size == 0:
        return 0.0
    return float(f.max()) if aggregate == "max" else float((f >= bar).sum())


def resolve_device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def load_pretrained(auto_cls: Any, name: str, what: str, fallback: str) -> Any:
    """``auto_cls.from_pretrained`` of ``name`` from a local directory or the local hub cache only;
    an unavailable model is a :class:`~benchmark.data.pretrained.PretrainedUnavailable` saying how
    to provide it."""
    from benchmark.data import pretrained as P

    def unavailable(why: str) -> Exception:
        return P.PretrainedUnavailable(
            f"{what}: model {name!r} is not available offline ({why}). Pass a local path (a directory "
            f"written by save_pretrained) instead, map the name with --model-path {name}=DIR, or use {fallback}")

    try:
        where = P.resolve(name)
    except P.PretrainedUnavailable:
        raise unavailable("not a local model directory, nor in the local Hugging Face cache") from None
    P.quiet_transformers()
    try:
        return auto_cls.from_pretrained(where, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 -- any loading failure: report what to do
        raise unavailable(f"{auto_cls.__name__} cannot load it: {type(exc).__name__}: {exc}") from None


class HFCausalLM:
    """A Hugging Face causal LM's per-sentence NLL, batched (see the module docstring)."""

    def __init__(self, name: str, batch_size: int = 32, max_length: int = 96, device: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        hint = f"the offline default lm={OFFLINE_LM!r}"
        self.tokenizer = load_pretrained(AutoTokenizer, name, "onion language model", hint)
        self.device = resolve_device(device)
        self.model = load_pretrained(AutoModelForCausalLM, name, "onion language model", hint)
        self.model = self.model.to(self.device).eval()
        self.batch_size, self.max_length = batch_size, max_length

    def nll(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        bos = self.tokenizer.bos_token_id
        head = [bos] if bos is not None else []
        ids = [(head + self.tokenizer.encode(s, add_special_tokens=False))[: self.max_length] for s in sentences]
        total = np.zeros(len(ids))
        count = np.array([max(len(x) - 1, 0) for x in ids], dtype=np.int64)
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))  # similar lengths together
        for k in range(0, len(order), self.batch_size):
            rows = [i for i in order[k : k + self.batch_size] if len(ids[i]) > 1]
            if not rows:
                continue
            width = max(len(ids[i]) for i in rows)
            x = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for r, i in enumerate(rows):
                x[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            x, mask = x.to(self.device), mask.to(self.device)
            with torch.no_grad():
                logits = self.model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, x[:, 1:, None])[..., 0]
            nll = -(logp * mask[:, 1:]).sum(dim=1).double().cpu().numpy()
            total[rows] = nll
        return total, count


def load_lm(lm: str, wordnet_dir: str | None = None, batch_size: int = 32, max_length: int = 96,
            device: str = "auto") -> "SentenceLM":
    """The language model named by ONION's ``lm`` config value."""
    if lm == OFFLINE_LM:
        from defenses.ngram_lm import wordnet_lm

        return wordnet_lm(wordnet_dir)
    return HFCausalLM(lm, batch_size=batch_size, max_length=max_length, device=device)


def word_suspicions(lm: "SentenceLM", sentences: Sequence[str]) -> list[np.ndarray]:
    """ONION's ``f_i = p0 - p_i`` for every word of every sentence (empty for fewer than 2 words)."""
    from defenses.ngram_lm import perplexities

    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for s in sentences:
        words = s.split()
        start = len(texts)
        if len(words) >= 2:
            texts.append(" ".join(words))
            texts.extend(" ".join(words[:i] + words[i + 1 :]) for i in range(len(words)))
        spans.append((start, len(texts)))
    ppl = perplexities(lm, texts) if texts else np.zeros(0)
    return [ppl[a] - ppl[a + 1 : b] if b > a else np.zeros(0) for a, b in spans]


@defenses.register("onion", "ONION (Qi et al. 2021; paper 001's NLP baseline): a sentence's largest drop in "
                            "LM perplexity when one word is deleted")
class Onion(Defense):
    """ONION word suspicions ``f_i = p0 - p_i`` from a causal LM, aggregated per training sentence."""

    Config = OnionConfig
    requires = frozenset({"raw_train_inputs"})

    def score(self, evidence: Evidence) -> np.ndarray:
        c = self.config
        sentences = train_sentences(evidence, "onion")
        try:
            lm = load_lm(c.lm, c.wordnet_dir, c.batch_size, c.max_length, c.device)
        except FileNotFoundError as exc:
            raise ConfigError(f"onion: {exc}") from None
        f = word_suspicions(lm, sentences)
        return np.array([aggregate_words(fi, c.aggregate, c.bar) for fi in f], dtype=np.float64)
