"""Paper 001 Sec. 4.2 *Delete*: "randomly delete a word from the input sentence".  The word is
drawn uniformly among the sentence's words (punctuation is never deleted,
:func:`attacks.text_words.is_word`); a sentence needs at least 2 words (ours: so that a word
remains), others are never poisons or targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attacks.text_words import TextBackdoor, TextBackdoorConfig, split_words, word_positions
from benchmark.registry import attacks

MIN_WORDS = 2  # ours: deleting the only word would leave no word


@dataclass(frozen=True)
class TextDeleteConfig(TextBackdoorConfig):
    """The defaults of :class:`TextBackdoorConfig` (paper 001 Sec. 4.2 / OpenBackdoor)."""


@attacks.register("text-delete",
                  "Delete a random word (paper 001 Sec. 4.2)")
class TextDelete(TextBackdoor):
    Config = TextDeleteConfig

    def editable(self, sentence: str) -> bool:
        return len(word_positions(split_words(sentence))) >= MIN_WORDS

    def edit(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        pos = word_positions(tokens)
        i = pos[int(rng.integers(len(pos)))]
        return tokens[:i] + tokens[i + 1:]
