"""``bertscore``: the masked-LM word suspicion of Fan et al. (2021), "Defending against backdoor
attacks in natural language generation" -- paper 001's *BERTScore* NLP baseline (Sec. 4.2,
Table 2), used as a training-set filter.

For each whitespace word ``w_i`` of a training sentence, mask it and read the masked LM's
probability of the original word; its suspicion is ``-log p(w_i | s with w_i masked)`` (an
improbable word, such as an inserted trigger, is suspicious).  A word that the tokenizer splits
into several pieces has *all* its pieces masked at once and its log-probability is the sum of the
pieces' log-probabilities at their positions (ours; the pieces are predicted independently, as a
masked LM does).  Pieces are the tokenizer's for the pre-split words (``is_split_into_words``;
its ``word_ids`` map pieces to words).  A sentence's score (``aggregate``) is the largest word
suspicion (``"max"``) or the number of words with suspicion ``>= bar`` (``"count_above_bar"``); a
sentence longer than ``max_length`` pieces is shortened by whole words (the cut words are not
scored), and a sentence with no scored word scores 0 (ours).

The masked LM (``mlm``) is a Hugging Face name in the local cache or a local directory, never
downloaded (:mod:`benchmark.data.pretrained`); the paper's ``bert-base-uncased`` does not load
offline here, so pass a local copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from benchmark.api import Defense, Evidence
from benchmark.config import ConfigError
from benchmark.registry import defenses
from defenses.onion import aggregate_words, check_aggregate, load_pretrained, resolve_device, train_sentences


@dataclass
class BertScoreConfig:
    mlm: str = "bert-base-uncased"  # paper 001 Sec. 4.2 (BERT's masked-LM score, Fan et al. 2021)
    aggregate: str = "max"  # ours, as onion (reference notes attacks_datasets.md Sec. 8)
    bar: float = 5.0  # ours: aggregate="count_above_bar" counts words with p < e^-5 (about 0.7 %)
    batch_size: int = 32  # ours (masked copies per forward pass; no effect on the scores)
    max_length: int = 128  # ours: pieces per sentence, special tokens included (longer: cut by whole words)
    device: str = "auto"  # ours: "auto" = cuda when available, else cpu

    def __post_init__(self) -> None:
        check_aggregate(self.aggregate)
        if self.batch_size < 1 or self.max_length < 3:
            raise ConfigError(f"batch_size must be >= 1 and max_length >= 3, got {self.batch_size}, "
                              f"{self.max_length}")


def _layout(tokenizer: Any, words: Sequence[str], max_length: int) -> tuple[list[int], list[tuple[int, int] | None]]:
    """The ids of a sentence with special tokens, and each word's ``[start, end)`` piece positions
    (None for a word with no piece, or cut off: the sentence is shortened by whole words until it
    fits ``max_length``)."""
    m = len(words)
    while True:
        enc = tokenizer(list(words[:m]), is_split_into_words=True)
        if len(enc["input_ids"]) <= max_length or m == 0:
            break
        m -= 1
    spans: list[tuple[int, int] | None] = [None] * len(words)
    for pos, w in enumerate(enc.word_ids()):
        if w is not None:
            spans[w] = (spans[w][0] if spans[w] else pos, pos + 1)
    return list(enc["input_ids"]), spans


def word_suspicions(model: Any, tokenizer: Any, sentences: Sequence[str], batch_size: int = 32,
                    max_length: int = 128, device: str = "cpu") -> list[np.ndarray]:
    """``-log p(word | sentence with the word's pieces masked)`` of every whitespace word of every
    sentence (nan for an unscored word)."""
    import torch

    if tokenizer.mask_token_id is None:
        raise ValueError(f"bertscore: tokenizer {type(tokenizer).__name__} has no mask token; mlm must be a "
                         f"masked language model")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = [np.full(len(s.split()), np.nan) for s in sentences]
    jobs: list[tuple[int, int, list[int], int, int]] = []  # (sentence, word, ids, start, end)
    for k, s in enumerate(sentences):
        ids, spans = _layout(tokenizer, s.split(), max_length)
        for i, span in enumerate(spans):
            if span is not None:
                jobs.append((k, i, ids, *span))
    jobs.sort(key=lambda j: (len(j[2]), j[0], j[1]))  # similar lengths together
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        width = max(len(j[2]) for j in batch)
        x = torch.full((len(batch), width), pad, dtype=torch.long)
        att = torch.zeros(len(batch), width, dtype=torch.long)
        for r, (_, _, ids, a, b) in enumerate(batch):
            x[r, : len(ids)] = torch.tensor(ids)
            att[r, : len(ids)] = 1
            x[r, a:b] = tokenizer.mask_token_id
        row = torch.tensor([r for r, j in enumerate(batch) for _ in range(j[3], j[4])])
        pos = torch.tensor([p for j in batch for p in range(j[3], j[4])])
        target = torch.tensor([j[2][p] for j in batch for p in range(j[3], j[4])])
        with torch.no_grad():  # log-probabilities at the masked positions only
            logits = model(input_ids=x.to(device), attention_mask=att.to(device)).logits
            logp = torch.log_softmax(logits[row.to(device), pos.to(device)].float(), dim=-1)
            piece = logp.gather(1, target.to(device)[:, None])[:, 0].double().cpu()
        word = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, row, piece)
        for r, (k, i, *_) in enumerate(batch):
            out[k][i] = -float(word[r])
    return out


@defenses.register("bertscore", "BERTScore (Fan et al. 2021; paper 001's NLP baseline): a sentence's most "
                                "improbable word under a masked LM, -log p(word | word masked)")
class BertScore(Defense):
    """Masked-LM word suspicions ``-log p(w_i | s with w_i masked)``, aggregated per training sentence."""

    Config = BertScoreConfig
    requires = frozenset({"raw_train_inputs"})

    def score(self, evidence: Evidence) -> np.ndarray:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        c = self.config
        sentences = train_sentences(evidence, "bertscore")
        hint = "another masked LM (e.g. a local bert-base-uncased directory)"
        tokenizer = load_pretrained(AutoTokenizer, c.mlm, "bertscore masked LM", hint)
        device = resolve_device(c.device)
        model = load_pretrained(AutoModelForMaskedLM, c.mlm, "bertscore masked LM", hint).to(device).eval()
        f = word_suspicions(model, tokenizer, sentences, c.batch_size, c.max_length, device)
        return np.array([aggregate_words(fi, c.aggregate, c.bar) for fi in f], dtype=np.float64)
