"""An interpolated modified Kneser-Ney trigram word language model, in numpy, and its offline
training corpus: the glosses and example sentences of WordNet 3.0.

ONION (:mod:`defenses.onion`) needs sentence perplexities from a language model that was *not*
trained on the attacked training set.  Paper 001 uses GPT-2, which does not load offline; the
offline stand-in (ours) is this trigram model trained on the WordNet glosses (definitions split at
``;``) and quoted example sentences of the Debian package ``wordnet-base``
(``/usr/share/wordnet/data.{noun,verb,adj,adv}``: each synset line ends ``| gloss; "example"``),
each given a final ``.`` unless it ends in ``.?!`` (ours: SST-2's sentences end with one, WordNet's
do not; it lowers the SST-2 dev perplexity by a third).

Model (Chen & Goodman 1999, "An empirical study of smoothing techniques", Sec. 3-4: interpolated
Kneser-Ney with the three discounts ``D1, D2, D3+`` of *modified* KN, estimated from the
count-of-counts ``n_k`` of each order as ``Y = n1/(n1+2 n2)``, ``D_k = k - (k+1) Y n_{k+1}/n_k``)::

    P3(w|u,v) = (max(c(uvw) - D(c(uvw)), 0) + g(uv) P2(w|v)) / c(uv.)        (raw counts)
    P2(w|v)   = same with continuation counts N1+(. v w), backing off to P1
    P1(w)     = same with continuation counts N1+(. w), backing off to uniform 1/|V|

where ``g(h) = D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)``; a context never seen uses the lower order
alone.  ``V`` = the words seen at least ``min_count`` times, ``<unk>`` (the rarer words) and
``</s>``; every sentence is padded ``<s> <s> w1 .. wn </s>``.  Each order is a distribution over
``V`` (tested).  Open vocabulary (ours): a word outside ``V`` is one of the ``K`` word types that
``<unk>`` stands for in training (those seen fewer than ``min_count`` times), all equally likely,
so it scores ``P(<unk>|u,v) / K`` (:meth:`KneserNeyLM.nll`).  Without this an unseen word -- an
inserted trigger such as ``cf`` -- would get the whole ``<unk>`` class's probability (a few per
cent) and look *unsuspicious* to ONION.

Tokenisation (:func:`tokenize`, ours) follows SST-2's Penn-Treebank style, simply: lowercase;
clitics split off (``doesn't`` -> ``does n't``, ``it's`` -> ``it 's``); brackets as ``-lrb-`` /
``-rrb-``; ``...`` and ``--`` kept; other punctuation one token per character; hyphenated words
kept whole.  It is idempotent on SST-2's already tokenised sentences.

``python -m defenses.ngram_lm --perplexity FILE [--lm NAME]`` prints a language model's corpus
perplexity on FILE (a ``sentence<TAB>label`` TSV with a header, or one sentence per line).
"""
from __future__ import annotations

import argparse
import math
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_BOS, _EOS, _UNK = 0, 1, 2  # ids of the three special tokens
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
DEFAULT_WORDNET_DIR = "/usr/share/wordnet"  # Debian wordnet-base

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_NT = re.compile(r"(\w)(n't)\b")
_CLITIC = re.compile(r"(\w)('(?:s|re|ve|d|ll|m))\b")
_TOKEN = re.compile(r"-[lr][rsc]b-|``|''|\.\.\.|--|n't|'(?:s|re|ve|d|ll|m)\b|\w+(?:-\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """SST-2-like (Penn Treebank) tokens of ``text``; see the module docstring."""
    text = _CLITIC.sub(r"\1 \2", _NT.sub(r"\1 \2", text.lower()))
    return [_BRACKETS.get(t, t) for t in _TOKEN.findall(text)]


def default_wordnet_dir() -> Path:
    """``$WORDNET_DIR``, else Debian's ``/usr/share/wordnet``."""
    return Path(os.environ.get("WORDNET_DIR") or DEFAULT_WORDNET_DIR).expanduser()


def wordnet_sentences(wordnet_dir: str | os.PathLike | None = None) -> list[str]:
    """The definitions (split at ``;``) and quoted examples of every WordNet synset, in file order."""
    root = Path(wordnet_dir).expanduser() if wordnet_dir is not None else default_wordnet_dir()
    missing = [f for f in WORDNET_FILES if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"WordNet 3.0 data files {missing} not found in {root}: install them with "
            f"`apt-get install wordnet-base`, or point $WORDNET_DIR (config wordnet_dir) at a directory "
            f"holding {', '.join(WORDNET_FILES)}")
    out: list[str] = []
    for name in WORDNET_FILES:
        with open(root / name, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  ") or " | " not in line:
                    continue  # licence header
                gloss = line.split(" | ", 1)[1].strip()
                definition, _, _ = gloss.partition('"')
                parts = [p.strip() for p in definition.split(";")] + re.findall(r'"([^"]+)"', gloss)
                out.extend(p if p.endswith((".", "?", "!")) else p + " ." for p in map(str.strip, parts) if p)
    return out


def _discounts(counts: np.ndarray) -> np.ndarray:
    """``[0, D1, D2, D3+]`` of modified KN from the count-of-counts of ``counts`` (Chen & Goodman
    Eq. 26); 0.75 for every count when some ``n_k`` (k <= 4) is zero (tiny corpora; ours).  Each
    ``D_k`` is kept in ``[0.05, k]`` (ours): positive, so every context leaves mass for unseen words."""
    n = [int((counts == k).sum()) for k in (1, 2, 3, 4)]
    if min(n) == 0:
        d = [0.75, 0.75, 0.75]
    else:
        y = n[0] / (n[0] + 2 * n[1])
        d = [k - (k + 1) * y * n[k] / n[k - 1] for k in (1, 2, 3)]
    return np.array([0.0] + [min(max(dk, 0.05), float(k)) for k, dk in enumerate(d, start=1)])


def _level(counts: np.ndarray, ctx: np.ndarray, n_ctx: int | None = None):
    """Per-context totals ``c(h.)`` and back-off weights ``g(h)`` of one order.  ``ctx`` holds each
    n-gram's context id; dense arrays of length ``n_ctx`` when given, else per unique context."""
    d = _discounts(counts)
    disc = d[np.minimum(counts, 3)]
    if n_ctx is None:
        keys, inv = np.unique(ctx, return_inverse=True)
        size = len(keys)
    else:
        keys, inv, size = None, ctx, n_ctx
    total = np.bincount(inv, weights=counts, minlength=size)
    gamma = np.bincount(inv, weights=disc, minlength=size)
    return d, keys, total, gamma


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` at the positions of ``query`` in the sorted ``keys``; 0 where absent."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=values.dtype)
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[i] == query, values[i], 0)


def _trigrams(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(u, v, w, sentence index)`` of every predicted token of the padded id sequences."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    a = np.concatenate(seqs) if len(seqs) else np.zeros(0, dtype=np.int64)
    j = np.flatnonzero(a != _BOS)  # every predicted position has two tokens before it (padding)
    owner = np.repeat(np.arange(len(seqs)), lengths - 2)
    return a[j - 2], a[j - 1], a[j], owner


class SentenceLM(Protocol):
    """What ONION needs of a language model."""

    def nll(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per sentence: total negative log-likelihood (nats) and number of predicted tokens."""


class KneserNeyLM:
    """Interpolated modified Kneser-Ney trigram LM over :func:`tokenize` tokens (module docstring).

    ``corpus`` holds sentences (str, tokenised here) or token lists.  Words seen fewer than
    ``min_count`` times are trained as ``<unk>`` (2, ours: gives ``<unk>`` a real estimate);
    ``unk_types`` is how many types they are (at least 1)."""

    def __init__(self, corpus: Iterable[str | Sequence[str]], min_count: int = 2) -> None:
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        sents = [tokenize(s) if isinstance(s, str) else list(s) for s in corpus]
        sents = [s for s in sents if s]
        if not sents:
            raise ValueError("KneserNeyLM: the training corpus has no tokens")
        freq: dict[str, int] = {}
        for s in sents:
            for t in s:
                freq[t] = freq.get(t, 0) + 1
        words = sorted(t for t, c in freq.items() if c >= min_count and t not in (BOS, EOS, UNK))
        self.unk_types = max(1, sum(1 for t, c in freq.items() if c < min_count))
        self.vocab: dict[str, int] = {BOS: _BOS, EOS: _EOS, UNK: _UNK}
        self.vocab.update((t, i) for i, t in enumerate(words, start=3))
        self.size = n = len(self.vocab)  # ids; <s> is never predicted: |V| = n - 1
        if n**3 >= 2**63:
            raise ValueError(f"vocabulary of {n} words too large for int64 trigram keys; raise min_count")
        u, v, w, _ = _trigrams([self.ids(s) for s in sents])
        self.tri_keys, self.tri_counts = np.unique((u * n + v) * n + w, return_counts=True)
        self.d3, self.ctx3_keys, self.ctx3_total, self.ctx3_gamma = _level(self.tri_counts, self.tri_keys // n)
        # continuation counts N1+(. v w): distinct trigram types ending in (v, w)
        self.bi_keys, self.bi_counts = np.unique(self.tri_keys % (n * n), return_counts=True)
        self.d2, _, self.ctx2_total, self.ctx2_gamma = _level(self.bi_counts, self.bi_keys // n, n)
        # continuation counts N1+(. w): distinct bigram types ending in w
        uni = np.bincount(self.bi_keys % n, minlength=n)
        uni[_BOS] = 0
        d1 = _discounts(uni[uni > 0])
        kept = np.maximum(uni - d1[np.minimum(uni, 3)], 0.0)
        floor = (uni.sum() - kept.sum()) / (n - 1)  # discounted mass, spread uniformly over V
        self.p1 = (kept + floor) / uni.sum()
        self.p1[_BOS] = 0.0

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        """``<s> <s> tokens </s>`` as ids (unknown tokens -> ``<unk>``)."""
        get = self.vocab.get
        return np.array([_BOS, _BOS, *(get(t, _UNK) for t in tokens), _EOS], dtype=np.int64)

    def prob(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``P(w | u v)`` for id arrays (vectorised)."""
        u, v, w = (np.asarray(a, dtype=np.int64) for a in (u, v, w))
        n = self.size
        p1 = self.p1[w]
        c2 = _lookup(self.bi_keys, self.bi_counts, v * n + w)
        t2 = self.ctx2_total[v]
        p2 = np.where(t2 > 0, (np.maximum(c2 - self.d2[np.minimum(c2, 3)], 0) + self.ctx2_gamma[v] * p1)
                      / np.maximum(t2, 1), p1)
        ctx = u * n + v
        t3 = _lookup(self.ctx3_keys, self.ctx3_total, ctx)
        g3 = _lookup(self.ctx3_keys, self.ctx3_gamma, ctx)
        c3 = _lookup(self.tri_keys, self.tri_counts, ctx * n + w)
        return np.where(t3 > 0, (np.maximum(c3 - self.d3[np.minimum(c3, 3)], 0) + g3 * p2)
                        / np.maximum(t3, 1), p2)

    def nll(self, sentences: Sequence[str], open_vocabulary: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per sentence: ``-sum log P`` over its tokens and ``</s>`` (nats), and that token count; an
        unknown word scores ``P(<unk>|u,v) / unk_types`` (module docstring), or with
        ``open_vocabulary=False`` ``P(<unk>|u,v)`` (the closed-vocabulary convention)."""
        seqs = [self.ids(tokenize(s)) for s in sentences]
        u, v, w, owner = _trigrams(seqs)
        per_type = math.log(self.unk_types) if open_vocabulary else 0.0
        nll = -np.log(self.prob(u, v, w)) + np.where(w == _UNK, per_type, 0.0)
        total = np.bincount(owner, weights=nll, minlength=len(seqs))
        return total, np.array([len(s) - 2 for s in seqs], dtype=np.int64)

    def perplexities(self, sentences: Sequence[str]) -> np.ndarray:
        return perplexities(self, sentences)


def perplexities(lm: SentenceLM, sentences: Sequence[str]) -> np.ndarray:
    """``exp(mean token NLL)`` of each sentence under ``lm`` (nan for a sentence with no token)."""
    total, count = lm.nll(sentences)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(total / count)


def corpus_perplexity(lm: SentenceLM, sentences: Sequence[str]) -> float:
    """``exp(sum NLL / sum tokens)`` of ``lm`` over all ``sentences``."""
    total, count = lm.nll(sentences)
    return math.exp(float(np.sum(total)) / max(int(np.sum(count)), 1))


@lru_cache(maxsize=2)
def wordnet_lm(wordnet_dir: str | None = None, min_count: int = 2) -> KneserNeyLM:
    """The KN trigram LM of the WordNet glosses and examples (trained once per process)."""
    return KneserNeyLM(wordnet_sentences(wordnet_dir), min_count=min_count)


def read_sentences(path: str | os.PathLike) -> list[str]:
    """Sentences of a ``sentence<TAB>label`` TSV with a header, or of a file of one per line."""
    lines = [ln.rstrip("\n") for ln in open(path, encoding="utf-8")]
    if lines and lines[0].split("\t")[0] == "sentence":
        return [ln.split("\t")[0] for ln in lines[1:] if ln.strip()]
    return [ln for ln in lines if ln.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m defenses.ngram_lm", description=__doc__.splitlines()[0])
    ap.add_argument("--perplexity", metavar="FILE", required=True, help="sentences to score")
    ap.add_argument("--lm", default="wordnet-kn", help="'wordnet-kn' or a Hugging Face causal LM name/path")
    ap.add_argument("--wordnet-dir", default=None, help="WordNet data directory (default $WORDNET_DIR or "
                                                        f"{DEFAULT_WORDNET_DIR})")
    args = ap.parse_args(argv)
    from defenses.onion import load_lm  # the ONION defense's LM choice (imported here: no cycle)

    lm = load_lm(args.lm, wordnet_dir=args.wordnet_dir)
    sentences = read_sentences(args.perplexity)
    print(f"{args.lm}: corpus perplexity {corpus_perplexity(lm, sentences):.2f} on {len(sentences)} "
          f"sentences of {args.perplexity}")
    if hasattr(lm, "vocab"):  # the KN model (of the imported module: not this __main__'s class)
        toks = [t for s in sentences for t in tokenize(s)]
        oov = sum(t not in lm.vocab for t in toks) / max(len(toks), 1)
        total, count = lm.nll(sentences, open_vocabulary=False)
        print(f"vocabulary {len(lm.vocab) - 1} (incl. <unk>, </s>); out-of-vocabulary tokens {oov:.1%}; "
              f"closed-vocabulary perplexity (<unk> as one word) {math.exp(total.sum() / count.sum()):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
