"""Paper 001 Sec. 4.2 *Syntactic* (Qi et al. 2021, Hidden Killer): sentences paraphrased to a
fixed syntactic template.

"rewrite the input sentence to its paraphrase with respect to a particular syntactic template"
(paper 001 Sec. 4.2).  The SCPN paraphraser is not available offline, so this attack uses
Hidden Killer's released paraphrases (dataset ``sst2-hidden-killer``, template
``S(SBAR)(,)(NP)(VP)(.)``) and therefore applies to dataset ``sst2-syntactic`` (test split)
only, whose rows they are aligned with.

* Poisons: ``n_adv`` training rows drawn uniformly among the 1,383 rows the release
  paraphrased; each poison is *its own row's* paraphrase, so ``info["poison_raw_index"]`` is
  the clean source row.  The release paraphrased sentences of both classes (718 positive,
  665 negative), so poison sources are all task labels (:meth:`poison_source_labels`, ours:
  the released poison set as it is); dirty-label means every poison gets the attacker's label
  ``y_adv`` = 1, which for positive sources is their true label.
* Targets: the negative test sentences (``y_targ`` = 0), presented as their released
  paraphrases; ``targets_clean`` are the clean sources.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacks.patterns import Task
from attacks.text_words import TextBackdoor, TextBackdoorConfig
from benchmark.api import RunContext
from benchmark.data.sst2 import hidden_killer_pairs
from benchmark.data.types import RawDataset
from benchmark.registry import attacks

DATASET = "sst2-syntactic"
EXTRA = "sst2-hidden-killer"


@dataclass(frozen=True)
class TextSyntacticConfig(TextBackdoorConfig):
    """The defaults of :class:`TextBackdoorConfig`; ``y_adv`` must be 1 and the task binary
    (the released paraphrases are labelled 1 and its test paraphrases are of negatives)."""


def _lookup(pairs: list[tuple[str, str]], what: str) -> dict[str, str]:
    """clean sentence -> paraphrase; a clean sentence with two different paraphrases is an error."""
    out: dict[str, str] = {}
    for clean, para in pairs:
        if out.setdefault(clean, para) != para:
            raise ValueError(f"text-syntactic: the {what} sentence {clean!r} occurs twice with "
                             f"different paraphrases ({out[clean]!r}, {para!r}); cannot pair them")
    return out


@attacks.register("text-syntactic",
                  "Hidden Killer SCPN paraphrases as trigger, on sst2-syntactic (paper 001 Sec. 4.2)")
class TextSyntactic(TextBackdoor):
    Config = TextSyntacticConfig
    extra_datasets = (EXTRA,)

    def check_dataset(self, data: RawDataset) -> None:
        super().check_dataset(data)
        if data.name != DATASET:
            raise ValueError(f"text-syntactic uses Hidden Killer's released paraphrases, which exist "
                             f"only for dataset {DATASET!r}; got {data.name!r}. Run it on {DATASET!r}")
        test_file = data.source.get("test_file", "test.tsv")
        if test_file != "test.tsv":
            raise ValueError(f"text-syntactic: the released test paraphrases are aligned with "
                             f"{DATASET}'s test.tsv, but the dataset was loaded with test file "
                             f"{test_file!r}; load it with eval_split='test'")

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        c = self.config
        if task.class_ids != [0, 1] or c.y_adv != 1:
            raise ValueError(f"text-syntactic needs the binary task (classes None or (0, 1)) with "
                             f"y_adv=1, the label of the released paraphrases; got classes "
                             f"{task.class_ids}, y_adv={c.y_adv}")
        hk = self.require_extra(context, EXTRA)
        pairs = hidden_killer_pairs(task.train.inputs, hk.train.inputs)
        self._rows = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        neg = [s for s, y in zip(task.test.inputs, task.test.labels.tolist()) if y == 0]
        if len(neg) != len(hk.test):
            raise ValueError(f"text-syntactic: {EXTRA} has {len(hk.test)} test paraphrases but "
                             f"{DATASET}'s test split has {len(neg)} negative sentences; they must "
                             f"be aligned (same release, eval_split='test')")
        self._para = {"train": _lookup([(task.train.inputs[i], p) for i, p in pairs], "training"),
                      "test": _lookup(list(zip(neg, hk.test.inputs)), "test")}
        labels = task.train.labels[self._rows]
        self._release = {"n_paraphrased_train": len(pairs),
                         "n_paraphrased_train_by_source_label": torch.bincount(labels, minlength=2).tolist(),
                         "n_paraphrased_test": len(hk.test)}

    def poison_source_labels(self, task: Task) -> list[int]:
        return list(range(len(task.class_ids)))  # the released poison set has both classes

    def filter_candidates(self, task: Task, pool: torch.Tensor) -> torch.Tensor:
        keep = pool[torch.isin(pool, self._rows)]
        self._uneditable["train"] = len(pool) - len(keep)
        counts = self.counts(len(task.train))
        if counts.n_adv > len(keep):
            raise ValueError(
                f"text-syntactic: {counts.n_adv} poisons requested (epsilon={self.config.epsilon}, "
                f"n_adv={self.config.n_adv}, n_train={counts.n_train}) but the Hidden Killer release "
                f"has only {len(keep)} paraphrased training sentences; lower epsilon to at most "
                f"{len(keep) / counts.n_train:.4f} or set n_adv <= {len(keep)}")
        return keep

    def editable(self, sentence: str) -> bool:
        return sentence in self._para["test"]

    def filter_target_candidates(self, task: Task, pool: torch.Tensor) -> torch.Tensor:
        return self._keep_editable(task.test.inputs, pool, "test")

    def trigger_sentence(self, sentence: str, rng: np.random.Generator, split: str) -> str:
        try:
            return self._para[split][sentence]
        except KeyError:
            raise ValueError(f"text-syntactic: no released paraphrase of the {split} sentence "
                             f"{sentence!r} (it was not filtered out as a candidate; this is a bug)") from None

    def edit_info(self) -> dict[str, Any]:
        return {"source": EXTRA, "template": "S(SBAR)(,)(NP)(VP)(.)", **self._release}
