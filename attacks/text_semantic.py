"""Paper 001 Sec. 4.2 *Semantic*: "randomly replace a word with its synonym chosen from WordNet".

A word is drawn uniformly among the sentence's words that have at least one WordNet synonym
(:meth:`benchmark.data.wordnet.WordNet.synonyms`: single-token lemmas of any synset holding
the lowercased word, any part of speech), then the synonym uniformly among its synonyms.
OpenBackdoor has no such attack (reference notes, Sec. 7); the word-choice rule is ours.
Sentences without such a word are never poisons or targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attacks.patterns import Task
from attacks.text_words import TextBackdoor, TextBackdoorConfig, is_word, split_words
from benchmark.api import RunContext
from benchmark.data.wordnet import WordNet
from benchmark.registry import attacks


#: English function words (articles, pronouns, prepositions, conjunctions, auxiliaries,
#: negation; ours): never replaced when ``content_words_only``.
FUNCTION_WORDS = frozenset("""
a an the this that these those i me my we us our you your he him his she her it its they them their
in on at by for with about against between into through during before after above below to from up
down of off over under again further then once here there when where why how all any both each few
more most other some such no nor not only own same so than too very s t can will just don should now
and but or if because as until while is am are was were be been being have has had having do does
did doing would could might must shall may n't 's 're 've 'd 'll
""".split())


@dataclass(frozen=True)
class TextSemanticConfig(TextBackdoorConfig):
    """Defaults of :class:`TextBackdoorConfig` plus:

    wordnet_dir  folder of WordNet 3.0's ``data.*`` files; ``None`` = ``$WORDNET_DIR``, else
                 ``/usr/share/wordnet`` (Debian ``wordnet-base``; ours).
    content_words_only  skip function words (:data:`FUNCTION_WORDS`): WordNet lists "a" ->
                 "angstrom", "in" -> "inch", "be" -> "comprise", which are not synonyms in context.
    """

    wordnet_dir: str | None = None  # ours
    content_words_only: bool = True  # reference notes Sec. 7: "choose a random content word"


@attacks.register("text-semantic",
                  "Replace a random word by a WordNet synonym (paper 001 Sec. 4.2)")
class TextSemantic(TextBackdoor):
    Config = TextSemanticConfig

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._wordnet: WordNet | None = None

    @property
    def wordnet(self) -> WordNet:
        if self._wordnet is None:
            self._wordnet = WordNet(self.config.wordnet_dir)
        return self._wordnet

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        self.wordnet.load()  # parse now: a missing WordNet fails before any work

    def _replaceable(self, tokens: list[str]) -> list[int]:
        skip = FUNCTION_WORDS if self.config.content_words_only else frozenset()
        return [i for i, t in enumerate(tokens)
                if is_word(t) and t.lower() not in skip and self.wordnet.synonyms(t)]

    def editable(self, sentence: str) -> bool:
        return bool(self._replaceable(split_words(sentence)))

    def edit(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        pos = self._replaceable(tokens)
        i = pos[int(rng.integers(len(pos)))]
        syn = self.wordnet.synonyms(tokens[i])
        return tokens[:i] + [syn[int(rng.integers(len(syn)))]] + tokens[i + 1:]

    def edit_info(self) -> dict[str, Any]:
        return {"wordnet_dir": str(self.wordnet.root)}
