"""Shared pieces of paper 001's NLP backdoors (Sec. 4.2): word splitting and the text recipe.

Sentences are split on whitespace and re-joined with single spaces (reference-code RIPPLe
``insert_word``: ``sentence.split()`` / ``" ".join``), so SST-2's pre-tokenised text keeps its
form.  Of the tokens, "words" are those with at least one alphanumeric character (ours): a
duplicate / delete / synonym edit never touches punctuation.  Insertion positions range over
all tokens, as in RIPPLe.

:class:`TextBackdoor` is the dirty-label recipe of :mod:`attacks.patterns` for text: each
triggered sentence gets its own random edit, drawn from the ``rng`` handed to ``apply_trigger``;
sentences the edit cannot apply to (deleting from a one-word sentence, no word with a synonym)
are never poison sources nor targets, and their numbers are recorded in ``info["trigger"]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacks.patterns import BackdoorConfig, Task, TriggerBackdoor
from benchmark.data.types import RawDataset, RawInputs


def split_words(sentence: str) -> list[str]:
    """Whitespace tokens of ``sentence`` (reference-code RIPPLe)."""
    return sentence.split()


def join_words(tokens: list[str]) -> str:
    return " ".join(tokens)


def is_word(token: str) -> bool:
    """A token counts as a word iff it has an alphanumeric character (ours)."""
    return any(ch.isalnum() for ch in token)


def word_positions(tokens: list[str]) -> list[int]:
    """Indices of the tokens that are words."""
    return [i for i, t in enumerate(tokens) if is_word(t)]


@dataclass(frozen=True)
class TextBackdoorConfig(BackdoorConfig):
    """Defaults for paper 001's NLP backdoors (Sec. 4.2) on binary sentiment.

    y_targ   ``None`` (ours): every class but ``y_adv``, i.e. the negative sentences of SST-2.
    y_adv    1 = positive (reference-code OpenBackdoor ``target_label`` 1; the paper does not say).
    epsilon  0.1 of the trained set (paper 001 Sec. 4.2: "eps N = 0.1").
    mode     "replace" (reference-code OpenBackdoor poisons the chosen examples in place).
    classes  ``None`` = all classes (ours).
    """

    y_targ: int | None = None  # ours: all-to-one onto y_adv
    y_adv: int = 1  # reference-code OpenBackdoor target_label 1
    epsilon: float | None = 0.1  # paper 001 Sec. 4.2
    mode: str = "replace"  # reference-code OpenBackdoor
    classes: tuple[int, ...] | None = None  # ours


class TextBackdoor(TriggerBackdoor):
    """Dirty-label text backdoor with a per-sentence random edit (subclasses define :meth:`edit`
    and :meth:`editable`, or :meth:`trigger_sentence`)."""

    Config = TextBackdoorConfig
    modalities = ("text",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._uneditable = {"train": 0, "test": 0}  # candidates dropped by the last craft

    def check_dataset(self, data: RawDataset) -> None:
        super().check_dataset(data)
        for split in (data.train, data.test):
            if not isinstance(split.inputs, list) or not all(isinstance(s, str) for s in split.inputs):
                raise ValueError(f"attack {type(self).__name__} needs raw text inputs (a list of "
                                 f"strings) but dataset {data.name!r} holds {type(split.inputs).__name__}; "
                                 f"use a text dataset such as 'sst2' or 'sst2-syntactic'")

    # -- what subclasses define ------------------------------------------------------------
    def editable(self, sentence: str) -> bool:
        """Whether the edit applies to ``sentence`` (default: always)."""
        return True

    def edit(self, tokens: list[str], rng: np.random.Generator) -> list[str]:
        """The triggered token list of one sentence (only called when :meth:`editable`);
        subclasses define it, or override :meth:`trigger_sentence`."""
        raise NotImplementedError(f"{type(self).__name__} defines neither edit nor trigger_sentence")

    def trigger_sentence(self, sentence: str, rng: np.random.Generator, split: str) -> str:
        """The triggered version of one sentence: its tokens, edited, re-joined."""
        if not self.editable(sentence):
            raise ValueError(f"{type(self).__name__}: cannot edit {sentence!r} (it was not filtered "
                             f"out as a candidate; this is a bug)")
        return join_words(self.edit(split_words(sentence), rng))

    def edit_info(self) -> dict[str, Any]:
        return {}

    # -- recipe hooks ----------------------------------------------------------------------
    def _keep_editable(self, inputs: list[str], pool: torch.Tensor, split: str) -> torch.Tensor:
        ok = torch.tensor([self.editable(inputs[int(i)]) for i in pool], dtype=torch.bool)
        self._uneditable[split] = int((~ok).sum())
        return pool[ok]

    def filter_candidates(self, task: Task, pool: torch.Tensor) -> torch.Tensor:
        return self._keep_editable(task.train.inputs, pool, "train")

    def filter_target_candidates(self, task: Task, pool: torch.Tensor) -> torch.Tensor:
        return self._keep_editable(task.test.inputs, pool, "test")

    def apply_trigger(self, inputs: RawInputs, rng: np.random.Generator, split: str,
                      task: Task) -> list[str]:
        return [self.trigger_sentence(s, rng, split) for s in inputs]

    def trigger_info(self) -> dict[str, Any]:
        return {**self.edit_info(),
                "n_uneditable_train_candidates": self._uneditable["train"],
                "n_uneditable_test_candidates": self._uneditable["test"]}
