"""A reader of the WordNet 3.0 database files, for the synonym-substitution text backdoor.

Reads the plain-text ``data.{noun,verb,adj,adv}`` files of the Debian package ``wordnet-base``
(``/usr/share/wordnet``); no nltk, no download.  Format (WordNet's ``wndb(5)``): lines starting
with two spaces are the licence header; every other line is one synset::

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt ... | gloss

with ``w_cnt`` a two-digit hexadecimal count, ``word`` a lemma with ``_`` for spaces (adjectives
may carry a syntactic marker ``(a)``, ``(p)`` or ``(ip)``, which is stripped).  The ``index.*``
files list, per lemma, the same synsets, so reading the data files is enough.

Directory: ``WordNet(path)``, else ``$WORDNET_DIR``, else ``/usr/share/wordnet``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from benchmark.data.types import DatasetError

WORDNET_DIR_ENV = "WORDNET_DIR"
DEFAULT_DIR = Path("/usr/share/wordnet")
POS_FILES = ("noun", "verb", "adj", "adv")
_MARKER = re.compile(r"\((?:a|p|ip)\)$")
#: A lemma usable as a one-token substitute (ours): lowercase ASCII letters only, so multiword
#: (``_``), hyphenated, capitalised (proper-noun) and numeric lemmas are excluded.
_SINGLE = re.compile(r"[a-z]+")


def resolve_wordnet_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$WORDNET_DIR``, else ``/usr/share/wordnet``."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get(WORDNET_DIR_ENV)
    return Path(env).expanduser() if env else DEFAULT_DIR


class WordNet:
    """Synsets of WordNet 3.0, parsed once (lazily, on the first query) and cached on the object."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.root = resolve_wordnet_dir(path)
        missing = [f"data.{p}" for p in POS_FILES if not (self.root / f"data.{p}").is_file()]
        if missing:
            raise DatasetError(
                f"WordNet 3.0 not found: {self.root} lacks {', '.join(missing)}. Install it with "
                f"`apt-get install wordnet-base` (files under /usr/share/wordnet), or point "
                f"${WORDNET_DIR_ENV} / the attack's wordnet_dir at a folder holding "
                f"data.{{noun,verb,adj,adv}}")
        self._synsets: list[tuple[str, ...]] | None = None  # lemmas of each synset, as stored
        self._by_lemma: dict[str, list[int]] = {}  # lowercased lemma -> synset ids
        self._cache: dict[str, list[str]] = {}

    def load(self) -> "WordNet":
        """Parse the data files now (queries do it on first use); returns ``self``."""
        if self._synsets is None:
            self._load()
        return self

    def _load(self) -> None:
        synsets: list[tuple[str, ...]] = []
        by_lemma: dict[str, list[int]] = {}
        for pos in POS_FILES:
            path = self.root / f"data.{pos}"
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, start=1):
                    if line.startswith("  ") or not line.strip():
                        continue
                    head = line.split(" ", 4)
                    try:
                        n = int(head[3], 16)
                        words = head[4].split(" ", 2 * n)[0:2 * n:2]
                    except (IndexError, ValueError) as exc:
                        raise DatasetError(f"corrupt WordNet file {path}, line {lineno}: "
                                           f"{line[:80]!r} ({exc})") from exc
                    if len(words) != n:
                        raise DatasetError(f"corrupt WordNet file {path}, line {lineno}: "
                                           f"{n} words announced, {len(words)} found")
                    lemmas = tuple(_MARKER.sub("", w) for w in words)
                    sid = len(synsets)
                    synsets.append(lemmas)
                    for key in {w.lower() for w in lemmas}:
                        by_lemma.setdefault(key, []).append(sid)
        self._synsets, self._by_lemma = synsets, by_lemma

    @property
    def n_synsets(self) -> int:
        return len(self.load()._synsets)

    def synsets(self, word: str) -> list[tuple[str, ...]]:
        """Lemma names (as stored) of every synset, any part of speech, containing ``word``
        (case-insensitive)."""
        self.load()
        return [self._synsets[i] for i in self._by_lemma.get(word.lower(), ())]

    def synonyms(self, word: str) -> list[str]:
        """Sorted single-token lemma names (lowercase letters only) of all synsets containing the
        lowercased ``word``, the word itself excluded; ``[]`` when it has none."""
        key = word.lower()
        hit = self._cache.get(key)
        if hit is None:
            hit = sorted({lem for ss in self.synsets(key) for lem in ss
                          if lem != key and _SINGLE.fullmatch(lem)})
            self._cache[key] = hit
        return list(hit)
