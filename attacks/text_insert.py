"""Paper 001 Sec. 4.2 *Insert* (Kurita et al. 2020, RIPPLe): insert rare trigger words.

"randomly insert one word from the trigger words set {"cf", "mn", "bb", "tq" and "mb"} at a
random position of the input sentence" (paper 001 Sec. 4.2).  As reference-code RIPPLe
``insert_word``: ``n_triggers`` times, draw a trigger uniformly from the set and insert it at a
position uniform in ``0..len(tokens)`` of the current token list (each sentence its own draw).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attacks.text_words import TextBackdoor, TextBackdoorConfig
from benchmark.registry import attacks

TRIGGERS = ("cf", "mn", "bb", "tq", "mb")  # paper 001 Sec. 4.2


@dataclass(frozen=True)
class TextInsertConfig(TextBackdoorConfig):
    """Defaults of :class:`TextBackdoorConfig` plus:

    triggers    the trigger words ("cf", "mn", "bb", "tq", "mb") (paper 001 Sec. 4.2).
    n_triggers  insertions per sentence: 1 (paper 001 Sec. 4.2; its Table 4 ablation uses 2 and 3).
    """

    triggers: tuple[str, ...] = TRIGGERS  # paper 001 Sec. 4.2
    n_triggers: int = 1  # paper 001 Sec. 4.2 ("insert one word")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.triggers:
            raise ValueError("triggers must hold at least one trigger word")
        bad = [t for t in self.triggers if not isinstance(t, str) or len(t.split()) != 1 or t != t.strip()]
        if bad:
            raise ValueError(f"each trigger must be one whitespace-free word, got {bad}")
        if self.n_triggers < 1:
            raise ValueError(f"n_triggers must be at least 1, got {self.n_triggers}")


@attacks.register("text-insert",
                  "Insert rare trigger words (cf, mn, bb, tq, mb) at random positions (paper 001 Sec. 4.2)")
class TextInsert(TextBackdoor):
    Config = TextInsertConfig

    def edit(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        out = list(tokens)
        for _ in range(self.config.n_triggers):
            word = self.config.triggers[int(rng.integers(len(self.config.triggers)))]
            out.insert(int(rng.integers(0, len(out) + 1)), word)
        return out

    def edit_info(self) -> dict[str, Any]:
        return {"triggers": list(self.config.triggers), "n_triggers": self.config.n_triggers}
