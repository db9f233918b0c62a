"""Paper 001 Sec. 4.2 *Duplicate*: "duplicate a random word from the input sentence and place
it right after that position".  The word is drawn uniformly among the sentence's words
(punctuation excluded, :func:`attacks.text_words.is_word`); sentences without a word are never
poisons or targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attacks.text_words import TextBackdoor, TextBackdoorConfig, split_words, word_positions
from benchmark.registry import attacks


@dataclass(frozen=True)
class TextDuplicateConfig(TextBackdoorConfig):
    """The defaults of :class:`TextBackdoorConfig` (paper 001 Sec. 4.2 / OpenBackdoor)."""


@attacks.register("text-duplicate",
                  "Repeat a random word right after itself (paper 001 Sec. 4.2)")
class TextDuplicate(TextBackdoor):
    Config = TextDuplicateConfig

    def editable(self, sentence: str) -> bool:
        return bool(word_positions(split_words(sentence)))

    def edit(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        pos = word_positions(tokens)
        i = pos[int(rng.integers(len(pos)))]
        return tokens[:i + 1] + [tokens[i]] + tokens[i + 1:]
