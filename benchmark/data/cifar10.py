"""``cifar10``: CIFAR-10 (50,000 train / 10,000 test 32x32 colour images, 10 classes).

Two on-disk layouts are accepted under ``<data_root>/cifar10/``:

* the official python format ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
  (what ``torchvision.datasets.CIFAR10(root, download=True)`` writes; ``download=True`` runs that
  route when nothing is found), read with ``pickle`` and checked against the official md5s;
* an ImageFolder tree ``{train,test}/<class>/*.{jpg,jpeg,png}`` whose class folders are the ten
  official class names (alphabetical order = official label order).  Decoding 60k JPEGs is slow,
  so the decoded uint8 tensors are cached (see :mod:`benchmark.data.cache`), keyed by the route,
  the root, a fingerprint of every file read and the decoder version.

Images are returned as float32 ``N x 3 x 32 x 32`` in ``[0, 1]`` (uint8 / 255).
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmark.data.cache import fingerprint_files, load_or_build, md5_file
from benchmark.data.types import DatasetError, RawDataset, Split
from benchmark.registry import datasets

#: Official label order (``batches.meta`` ``label_names``; reference-code / dataset release).
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FOLDER = "cifar10"
PICKLE_DIR = "cifar-10-batches-py"
#: Official md5 of each python-format file (as listed by torchvision.datasets.CIFAR10).
TRAIN_BATCHES = [
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
]
TEST_BATCH = ("test_batch", "40351d587109b95175f43aff81a1287e")
META = ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SIDE = 32
SOURCES = ("auto", "pickle", "imagefolder")


def layout_help(base: Path) -> str:
    return (
        f"Expected under {base}/ either the official python format "
        f"{PICKLE_DIR}/{{data_batch_1..5,test_batch,batches.meta}} or an ImageFolder tree "
        f"train/<class>/*.jpg and test/<class>/*.jpg with class folders {', '.join(CLASSES)}. "
        f"Pass --download (download=True) to fetch the official archive with "
        f"torchvision.datasets.CIFAR10 (needs internet), or point --data-root at a folder "
        f"that holds {FOLDER}/."
    )


@datasets.register("cifar10", "CIFAR-10 32x32 colour images, 50k/10k, 10 classes (pickle or ImageFolder)")
def load_cifar10(data_root: Path, cache_dir: Path | None = None, download: bool = False,
                 source: str = "auto", verify_md5: bool = True) -> RawDataset:
    """Load CIFAR-10 from ``<data_root>/cifar10``; ``source`` forces a layout ("pickle" or
    "imagefolder"); ``verify_md5`` checks the python-format files against the official md5s."""
    if source not in SOURCES:
        raise DatasetError(f"cifar10: source must be one of {SOURCES}, got {source!r}")
    base = Path(data_root) / FOLDER
    has_pickle = (base / PICKLE_DIR).is_dir()
    has_folder = (base / "train").is_dir() and (base / "test").is_dir()
    route = source
    if source == "auto":
        route = "pickle" if has_pickle else "imagefolder" if has_folder else "download"
    if route == "imagefolder" and not has_folder:
        raise DatasetError(f"CIFAR-10 ImageFolder tree not found: {base}/train and {base}/test "
                           f"must both exist. {layout_help(base)}")
    if route in ("pickle", "download") and not has_pickle:
        if not download:
            raise DatasetError(f"CIFAR-10 not found under {base}. {layout_help(base)}")
        _download(base)
        route = "download"
    if route == "imagefolder":
        return _load_imagefolder(base, cache_dir)
    ds = _load_pickle(base / PICKLE_DIR, verify_md5)
    if route == "download":
        ds.source["route"] = "torchvision-download+pickle"
    return ds


# -- official python format ---------------------------------------------------------------
def _download(base: Path) -> None:
    try:
        from torchvision.datasets import CIFAR10
        base.mkdir(parents=True, exist_ok=True)
        CIFAR10(root=str(base), train=True, download=True)
        CIFAR10(root=str(base), train=False, download=True)
    except Exception as exc:  # network / disk errors
        raise DatasetError(f"downloading CIFAR-10 into {base} failed ({exc}). "
                           f"{layout_help(base)}") from exc


def _read_batch(path: Path, md5: str, verify_md5: bool) -> dict:
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 file missing: {path}. {layout_help(path.parent.parent)}")
    if verify_md5 and md5_file(path) != md5:
        raise DatasetError(f"corrupt CIFAR-10 file {path}: md5 differs from the official {md5}. "
                           f"Delete {path.parent} and pass --download, or pass verify_md5=False "
                           f"for a deliberately modified copy.")
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="latin1")
    except Exception as exc:
        raise DatasetError(f"corrupt CIFAR-10 file {path}: cannot unpickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"corrupt CIFAR-10 file {path}: expected a dict, got {type(obj).__name__}")
    return obj


def _batch_arrays(path: Path, obj: dict) -> tuple[np.ndarray, np.ndarray]:
    data, labels = obj.get("data"), obj.get("labels")
    if data is None or labels is None:
        raise DatasetError(f"corrupt CIFAR-10 file {path}: keys 'data' and 'labels' required, "
                           f"found {sorted(map(str, obj))}")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        raise DatasetError(f"corrupt CIFAR-10 file {path}: 'data' must be uint8 N x 3072, got "
                           f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(f"corrupt CIFAR-10 file {path}: need {data.shape[0]} labels in 0..9")
    return data.reshape(-1, 3, SIDE, SIDE), labels


def _load_pickle(folder: Path, verify_md5: bool) -> RawDataset:
    meta = _read_batch(folder / META[0], META[1], verify_md5)
    names = list(meta.get("label_names", []))
    if names != CLASSES:
        raise DatasetError(f"corrupt CIFAR-10 file {folder / META[0]}: label_names {names} "
                           f"differ from the official {CLASSES}")
    parts = [_batch_arrays(folder / n, _read_batch(folder / n, m, verify_md5)) for n, m in TRAIN_BATCHES]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _batch_arrays(folder / TEST_BATCH[0],
                                   _read_batch(folder / TEST_BATCH[0], TEST_BATCH[1], verify_md5))
    return RawDataset(
        name="cifar10", modality="image", classes=list(CLASSES),
        train=Split(_to_float(torch.from_numpy(train_x)), torch.from_numpy(train_y)),
        test=Split(_to_float(torch.from_numpy(np.ascontiguousarray(test_x))), torch.from_numpy(test_y)),
        source={"route": "pickle", "dir": str(folder), "md5_verified": verify_md5},
    )


# -- ImageFolder tree ---------------------------------------------------------------------
def list_imagefolder(base: Path) -> dict[str, list[tuple[Path, int]]]:
    """``{"train": [(file, label), ...], "test": [...]}`` sorted by (label, file name)."""
    out: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "test"):
        split_dir = base / split
        found = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
        if found != sorted(CLASSES):
            raise DatasetError(f"CIFAR-10 ImageFolder {split_dir} has class folders {found}; "
                               f"expected exactly {CLASSES}. {layout_help(base)}")
        rows: list[tuple[Path, int]] = []
        for label, cls in enumerate(CLASSES):
            files = sorted(e.name for e in os.scandir(split_dir / cls)
                           if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
            if not files:
                raise DatasetError(f"CIFAR-10 ImageFolder class folder {split_dir / cls} holds no images "
                                   f"({'/'.join(IMAGE_EXTENSIONS)}); every class needs its images. "
                                   f"{layout_help(base)}")
            rows += [(split_dir / cls / f, label) for f in files]
        if not rows:
            raise DatasetError(f"CIFAR-10 ImageFolder {split_dir} holds no images "
                               f"({'/'.join(IMAGE_EXTENSIONS)}). {layout_help(base)}")
        out[split] = rows
    return out


def _decoder() -> tuple[str, Callable[[Path], torch.Tensor]]:
    """``(id, decode)``: torchvision.io (about 4x faster than PIL here; deprecated since
    torchvision 0.29) when available, else PIL.  Both give identical pixels on the CIFAR-10
    JPEGs (checked on 1,000 test images); the id is part of the cache key anyway."""
    import torchvision

    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:
        from PIL import Image
        import PIL

        def decode_pil(path: Path) -> torch.Tensor:
            with Image.open(path) as im:
                return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)

        return f"PIL {PIL.__version__} RGB", decode_pil

    def decode_tv(path: Path) -> torch.Tensor:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)

    return f"torchvision.io.decode_image(RGB) {torchvision.__version__}", decode_tv


def _decode(rows: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    _, decode = _decoder()
    images = torch.empty(len(rows), 3, SIDE, SIDE, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision.io deprecation, per call
        for i, (path, _) in enumerate(rows):
            try:
                img = decode(path)
            except Exception as exc:
                raise DatasetError(f"corrupt CIFAR-10 image {path}: cannot decode ({exc})") from exc
            if tuple(img.shape) != (3, SIDE, SIDE):
                raise DatasetError(f"corrupt CIFAR-10 image {path}: size {tuple(img.shape)}, "
                                   f"expected (3, {SIDE}, {SIDE})")
            images[i] = img
    labels = torch.tensor([label for _, label in rows], dtype=torch.long)
    return images, labels


def _load_imagefolder(base: Path, cache_dir: Path | None) -> RawDataset:
    rows = list_imagefolder(base)
    files = [p for split in ("train", "test") for p, _ in rows[split]]
    key = {"dataset": "cifar10", "route": "imagefolder", "root": str(base.resolve()),
           "fingerprint": fingerprint_files(base, files), "decoder": _decoder()[0]}

    def build() -> dict:
        train_x, train_y = _decode(rows["train"])
        test_x, test_y = _decode(rows["test"])
        return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}

    cached = load_or_build(cache_dir, "cifar10", key, build)
    p = cached.payload
    return RawDataset(
        name="cifar10", modality="image", classes=list(CLASSES),
        train=Split(_to_float(p["train_x"]), p["train_y"]),
        test=Split(_to_float(p["test_x"]), p["test_y"]),
        source={"route": "imagefolder", "dir": str(base), "files": len(files),
                "fingerprint": key["fingerprint"], "decoder": key["decoder"],
                "cache": cached.status, "cache_file": str(cached.path) if cached.path else None},
    )


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).div_(255.0)
