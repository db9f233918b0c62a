"""``mnist``: MNIST handwritten digits from the official IDX files.

Files are looked up in ``<data_root>/MNIST/raw/`` (torchvision's layout) or
``<data_root>/mnist/raw/``, gzip-compressed (``*.gz``, preferred) or raw.  Either split may be
absent: the offline copy in ``../shared/datasets`` only holds the t10k (test) files, so the
train split is then empty (0 examples) and ``source["splits"]["train"]`` says so.  Magic
numbers, dimensions and sizes are checked; gzip files with an official name are checked against
the official md5 (``verify_md5=True``).  Images are float32 ``N x 1 x 28 x 28`` in ``[0, 1]``.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from benchmark.data.cache import md5_file
from benchmark.data.types import DatasetError, RawDataset, Split
from benchmark.registry import datasets

FOLDERS = ("MNIST/raw", "mnist/raw")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Official md5 of the gzip files (dataset release; also listed by torchvision.datasets.MNIST).
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: IDX magic numbers: 0x00000803 = unsigned byte, 3 dims; 0x00000801 = unsigned byte, 1 dim.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
SIDE = 28


def layout_help(data_root: Path) -> str:
    return (
        f"Expected IDX files {', '.join(n for pair in FILES.values() for n in pair)} (each "
        f"optionally .gz) under {data_root}/MNIST/raw/ or {data_root}/mnist/raw/; at least the "
        f"t10k (test) pair. Pass --download (download=True) to fetch them with "
        f"torchvision.datasets.MNIST (needs internet)."
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file (gzip or raw) and check its magic number and size."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"corrupt MNIST file {path}: cannot read/decompress ({exc})") from exc
    if len(data) < 4:
        raise DatasetError(f"corrupt MNIST file {path}: {len(data)} bytes, no IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DatasetError(f"corrupt MNIST file {path}: magic number {found:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"corrupt MNIST file {path}: truncated header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) != header + math.prod(dims):
        raise DatasetError(f"corrupt MNIST file {path}: header announces dims {dims} "
                           f"({header + math.prod(dims)} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_folder(data_root: Path) -> Path | None:
    for rel in FOLDERS:
        folder = Path(data_root) / rel
        if folder.is_dir() and any(_find(folder, s) for pair in FILES.values() for s in pair):
            return folder
    return None


def _download(data_root: Path) -> None:
    try:
        from torchvision.datasets import MNIST
        Path(data_root).mkdir(parents=True, exist_ok=True)
        MNIST(root=str(data_root), train=True, download=True)
        MNIST(root=str(data_root), train=False, download=True)
    except Exception as exc:
        raise DatasetError(f"downloading MNIST into {data_root}/MNIST/raw failed ({exc}). "
                           f"{layout_help(data_root)}") from exc


@datasets.register("mnist", "MNIST 28x28 digits from IDX files (train split may be absent: test-only copies work)")
def load_mnist(data_root: Path, cache_dir: Path | None = None, download: bool = False,
               verify_md5: bool = True) -> RawDataset:
    folder = _find_folder(data_root)
    complete = folder is not None and all(_find(folder, s) for pair in FILES.values() for s in pair)
    if download and not complete:
        _download(data_root)
        folder = _find_folder(data_root)
    if folder is None:
        raise DatasetError(f"MNIST not found under {data_root}. {layout_help(data_root)}")
    splits: dict[str, Split] = {}
    record: dict[str, object] = {}
    verified: list[str] = []
    for split, (img_stem, lbl_stem) in FILES.items():
        img_path, lbl_path = _find(folder, img_stem), _find(folder, lbl_stem)
        if img_path is None and lbl_path is None:
            splits[split] = Split(torch.empty(0, 1, SIDE, SIDE), torch.empty(0, dtype=torch.long))
            record[split] = f"absent: {img_stem}[.gz] not in {folder}; split is empty (0 examples)"
            continue
        missing = img_stem if img_path is None else lbl_stem if lbl_path is None else None
        if missing is not None:
            raise DatasetError(f"MNIST file missing: {folder / missing}[.gz] (its partner file is "
                               f"present). {layout_help(data_root)}")
        for path in (img_path, lbl_path):
            official = OFFICIAL_MD5.get(path.name)
            if verify_md5 and official is not None:
                if md5_file(path) != official:
                    raise DatasetError(f"corrupt MNIST file {path}: md5 differs from the official "
                                       f"{official}. Delete it and pass --download, or pass "
                                       f"verify_md5=False for a deliberately modified copy.")
                verified.append(path.name)
        images = read_idx(img_path, IMAGES_MAGIC)
        labels = read_idx(lbl_path, LABELS_MAGIC)
        if images.shape[1:] != (SIDE, SIDE):
            raise DatasetError(f"corrupt MNIST file {img_path}: images are {images.shape[1:]}, "
                               f"expected ({SIDE}, {SIDE})")
        if len(images) != len(labels):
            raise DatasetError(f"corrupt MNIST files {img_path} / {lbl_path}: {len(images)} images "
                               f"but {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise DatasetError(f"corrupt MNIST file {lbl_path}: label {labels.max()} > 9")
        x = torch.from_numpy(images.copy()).unsqueeze(1).to(torch.float32).div_(255.0)
        splits[split] = Split(x, torch.from_numpy(labels.astype(np.int64)))
        record[split] = f"{img_path.name} + {lbl_path.name}: {len(labels)} examples"
    return RawDataset(
        name="mnist", modality="image", classes=[str(d) for d in range(10)],
        train=splits["train"], test=splits["test"],
        source={"route": "idx", "dir": str(folder), "splits": record, "md5_verified": verified},
    )
