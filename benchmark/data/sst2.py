"""``sst2``, ``sst2-syntactic``, ``sst2-hidden-killer``: SST-2 as GLUE-style TSV files.

* ``sst2``: ``<data_root>/sst2/{train,dev}.tsv`` (GLUE SST-2; 67,349 phrases / 872 sentences).
  train = ``train.tsv``, test = ``dev.tsv`` (GLUE's test split has no labels; papers report on dev).
* ``sst2-syntactic``: sentence-level SST-2 of the Hidden Killer release,
  ``<data_root>/sst2-syntactic/clean/{train,dev,test}.tsv``; test = ``test.tsv`` by default, or
  ``dev.tsv`` with ``eval_split="dev"``.
* ``sst2-hidden-killer``: the Hidden Killer syntactic-trigger data of the same release,
  ``<data_root>/sst2-syntactic/scpn20/{train,test}.tsv`` (SCPN paraphrases, template
  ``S(SBAR)(,)(NP)(VP)(.)``, 20% poison rate).  train: 6,920 rows row-aligned with
  ``clean/train.tsv``; the 1,383 rows that differ are the paraphrased poisons, all labelled 1
  (718 from positive, 665 from negative sources), :func:`hidden_killer_pairs` pairs them with
  their rows.  test: 912 paraphrases, all labelled 1 (the attacker's label), of the 912
  negative (label-0) sentences of ``clean/test.tsv``, in the same order (checked on the shared
  copy: the aligned pairs share on average 43% of their word types, neighbours-off-by-one 9%;
  for 83% of the rows the aligned clean sentence is the closest of all 912 negatives).
  ``scpn20/dev.tsv`` (427 rows for 428 negatives, not aligned) is not read.

Every file has the header ``sentence<TAB>label`` and one ``sentence<TAB>0|1`` row per line
(no quoting: sentences may contain quote characters).  Sentences are returned exactly as
stored (only the line terminator, ``\\n`` or ``\\r\\n``, is removed).  Label 0 = negative,
1 = positive.
"""
from __future__ import annotations

from pathlib import Path

import torch

from benchmark.data.types import DatasetError, RawDataset, Split
from benchmark.registry import datasets

CLASSES = ["negative", "positive"]
HEADER = ["sentence", "label"]
GLUE_URL = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
HIDDEN_KILLER_URL = "https://github.com/thunlp/HiddenKiller"


def read_glue_tsv(path: Path) -> tuple[list[str], torch.Tensor]:
    """Read one ``sentence<TAB>label`` TSV; any malformed line is an error naming file and line."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"corrupt TSV file {path}: not UTF-8 ({exc})") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if not lines or lines[0].split("\t") != HEADER:
        got = lines[0] if lines else "(empty file)"
        raise DatasetError(f"corrupt TSV file {path}: header must be 'sentence<TAB>label', got {got!r}")
    sentences: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 2 or parts[1] not in ("0", "1"):
            raise DatasetError(f"corrupt TSV file {path}, line {lineno}: expected "
                               f"'sentence<TAB>0|1', got {line[:80]!r}")
        sentences.append(parts[0])
        labels.append(int(parts[1]))
    return sentences, torch.tensor(labels, dtype=torch.long)


def hidden_killer_pairs(clean_train: list[str], hidden_killer_train: list[str]) -> list[tuple[int, str]]:
    """``(row, paraphrase)`` for every training row where ``scpn20/train.tsv`` differs from the
    row-aligned ``clean/train.tsv`` (the Hidden Killer poisons, each paired with its source row)."""
    if len(clean_train) != len(hidden_killer_train):
        raise DatasetError(f"Hidden Killer train has {len(hidden_killer_train)} rows but the clean "
                           f"train split {len(clean_train)}; they must be row-aligned "
                           f"(sst2-syntactic/clean/train.tsv and sst2-syntactic/scpn20/train.tsv "
                           f"of the same release)")
    return [(i, p) for i, (c, p) in enumerate(zip(clean_train, hidden_killer_train)) if c != p]


def _require(path: Path, help_text: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"missing file {path}. {help_text}")
    return path


@datasets.register("sst2", "SST-2 (GLUE): 67,349 train phrases, 872 dev sentences as test; binary sentiment")
def load_sst2(data_root: Path, cache_dir: Path | None = None, download: bool = False) -> RawDataset:
    base = Path(data_root) / "sst2"
    help_text = (f"Expected GLUE SST-2 files {base}/train.tsv and {base}/dev.tsv (header "
                 f"'sentence<TAB>label'). Automatic download is not supported: download "
                 f"{GLUE_URL} and extract SST-2/train.tsv and SST-2/dev.tsv into {base}/.")
    if not base.is_dir():
        raise DatasetError(f"SST-2 not found: {base} does not exist. {help_text}")
    train_x, train_y = read_glue_tsv(_require(base / "train.tsv", help_text))
    test_x, test_y = read_glue_tsv(_require(base / "dev.tsv", help_text))
    return RawDataset(
        name="sst2", modality="text", classes=list(CLASSES),
        train=Split(train_x, train_y), test=Split(test_x, test_y),
        source={"route": "glue-tsv", "dir": str(base), "train_file": "train.tsv", "test_file": "dev.tsv"},
    )


@datasets.register("sst2-syntactic",
                   "Sentence-level SST-2 of Hidden Killer (6,920 train / 872 dev / 1,821 test), clean split")
def load_sst2_syntactic(data_root: Path, cache_dir: Path | None = None, download: bool = False,
                        eval_split: str = "test") -> RawDataset:
    if eval_split not in ("test", "dev"):
        raise DatasetError(f"sst2-syntactic: eval_split must be 'test' or 'dev', got {eval_split!r}")
    base = Path(data_root) / "sst2-syntactic" / "clean"
    help_text = (f"Expected {base}/{{train,dev,test}}.tsv (header 'sentence<TAB>label'), the clean "
                 f"sentence-level SST-2 of the Hidden Killer release ({HIDDEN_KILLER_URL}); "
                 f"automatic download is not supported.")
    if not base.is_dir():
        raise DatasetError(f"sst2-syntactic not found: {base} does not exist. {help_text}")
    train_x, train_y = read_glue_tsv(_require(base / "train.tsv", help_text))
    test_x, test_y = read_glue_tsv(_require(base / f"{eval_split}.tsv", help_text))
    return RawDataset(
        name="sst2-syntactic", modality="text", classes=list(CLASSES),
        train=Split(train_x, train_y), test=Split(test_x, test_y),
        source={"route": "glue-tsv", "dir": str(base), "train_file": "train.tsv",
                "test_file": f"{eval_split}.tsv"},
    )


@datasets.register("sst2-hidden-killer",
                   "Hidden Killer SCPN paraphrases of sst2-syntactic (6,920 aligned train rows, 912 test)")
def load_sst2_hidden_killer(data_root: Path, cache_dir: Path | None = None,
                            download: bool = False) -> RawDataset:
    """train = ``scpn20/train.tsv`` (row-aligned with ``clean/train.tsv``), test =
    ``scpn20/test.tsv`` (aligned in order with the label-0 rows of ``clean/test.tsv``); labels
    as released (poisons and test paraphrases are all 1)."""
    base = Path(data_root) / "sst2-syntactic" / "scpn20"
    help_text = (f"Expected {base}/{{train,test}}.tsv (header 'sentence<TAB>label'), the SCPN "
                 f"poison data of the Hidden Killer release ({HIDDEN_KILLER_URL}); automatic "
                 f"download is not supported.")
    if not base.is_dir():
        raise DatasetError(f"sst2-hidden-killer not found: {base} does not exist. {help_text}")
    train_x, train_y = read_glue_tsv(_require(base / "train.tsv", help_text))
    test_x, test_y = read_glue_tsv(_require(base / "test.tsv", help_text))
    return RawDataset(
        name="sst2-hidden-killer", modality="text", classes=list(CLASSES),
        train=Split(train_x, train_y), test=Split(test_x, test_y),
        source={"route": "glue-tsv", "dir": str(base), "train_file": "train.tsv", "test_file": "test.tsv",
                "train_aligned_with": "sst2-syntactic/clean/train.tsv (row by row)",
                "test_aligned_with": "label-0 rows of sst2-syntactic/clean/test.tsv, in order"},
    )
