"""``ag-news``: AG's News topic classification (Zhang et al. 2015), the standard CSV release.

``<data_root>/ag_news/{train,test}.csv``: no header, one quoted CSV row per article,
``"class index","title","description"`` with class index 1-4 (World, Sports, Business,
Sci/Tech; 120,000 / 7,600 rows).  An example's text is ``title + " " + description`` with the
release's ``\\`` line-break escapes turned into spaces (ours).  Labels are 0-3.  Not in this
project's offline data; paper 001 Table 2's AG News rows are listed as unavailable offline.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch

from benchmark.data.types import DatasetError, RawDataset, Split
from benchmark.registry import datasets

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
URL = "https://github.com/mhjabreel/CharCnn_Keras/tree/master/data/ag_news_csv"


def read_ag_news_csv(path: Path) -> tuple[list[str], torch.Tensor]:
    """Rows ``class, title, description``; a malformed row is an error naming file and line."""
    texts: list[str] = []
    labels: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for lineno, row in enumerate(csv.reader(fh), start=1):
                if len(row) != 3 or row[0] not in ("1", "2", "3", "4"):
                    raise DatasetError(f"corrupt AG News file {path}, row {lineno}: expected "
                                       f"'\"1-4\",\"title\",\"description\"', got {str(row)[:80]}")
                text = f"{row[1]} {row[2]}".replace("\\\\", " ").replace("\\n", " ")
                texts.append(" ".join(text.split()))
                labels.append(int(row[0]) - 1)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"corrupt AG News file {path}: not UTF-8 ({exc})") from exc
    return texts, torch.tensor(labels, dtype=torch.long)


@datasets.register("ag-news", "AG News (4 topics, 120,000 / 7,600 articles) from its standard CSV files")
def load_ag_news(data_root: Path, cache_dir: Path | None = None, download: bool = False) -> RawDataset:
    base = Path(data_root) / "ag_news"
    help_text = (f"Expected {base}/train.csv and {base}/test.csv (the standard AG News CSV release, e.g. "
                 f"{URL}); automatic download is not supported.")
    for name in ("train.csv", "test.csv"):
        if not (base / name).is_file():
            raise DatasetError(f"AG News not found: missing {base / name}. {help_text}")
    train_x, train_y = read_ag_news_csv(base / "train.csv")
    test_x, test_y = read_ag_news_csv(base / "test.csv")
    return RawDataset(name="ag-news", modality="text", classes=list(CLASSES),
                      train=Split(train_x, train_y), test=Split(test_x, test_y),
                      source={"route": "ag-news-csv", "dir": str(base)})
