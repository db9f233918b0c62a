"""Real-data loaders (cifar10, mnist, fsdd, sst2, sst2-syntactic) and the decode cache.

Every loader is exercised on tiny files in the real on-disk format written to ``tmp_path``;
the ``realdata`` tests check counts and a few values on ``../shared/datasets`` when present.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data import cache as cache_mod
from benchmark.data import cifar10, fsdd, mnist, sst2
from benchmark.data.types import DatasetError
from benchmark.registry import datasets

REAL = Path(os.environ.get("BENCHMARK_DATA_ROOT",
                           Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_all_loaders_registered_with_descriptions():
    for name in ("cifar10", "mnist", "fsdd", "sst2", "sst2-syntactic"):
        entry = datasets.entry(name)
        assert entry.description and "\n" not in entry.description
    assert cifar10.CLASSES == CLASSES


# ------------------------------------------------------------------------------------------
# CIFAR-10, official python (pickle) format
# ------------------------------------------------------------------------------------------
def write_cifar_pickles(base: Path, n: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``cifar10/cifar-10-batches-py`` with ``n`` images per batch; returns the arrays."""
    folder = base / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": n, "num_vis": 3072}, fh)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "data": data, "labels": labels,
                         "filenames": [f"{name}_{i}.png" for i in range(n)]}, fh)
        arrays[name] = (data, np.array(labels))
    return arrays


def test_cifar_pickle_layout_and_pixels(tmp_path):
    arrays = write_cifar_pickles(tmp_path)
    ds = cifar10.load_cifar10(tmp_path, tmp_path / "cache", verify_md5=False)
    assert ds.modality == "image" and ds.classes == CLASSES
    assert ds.train.inputs.shape == (15, 3, 32, 32) and ds.test.inputs.shape == (3, 3, 32, 32)
    assert ds.train.inputs.dtype == torch.float32
    assert ds.source["route"] == "pickle"
    # official row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    data2, labels2 = arrays["data_batch_2"]
    i = 1
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        expected = data2[i, c * 1024 + h * 32 + w] / 255.0
        assert ds.train.inputs[3 + i, c, h, w].item() == pytest.approx(expected, abs=1e-7)
    train_labels = np.concatenate([arrays[f"data_batch_{k}"][1] for k in range(1, 6)])
    assert ds.train.labels.tolist() == train_labels.tolist()
    assert ds.test.labels.tolist() == arrays["test_batch"][1].tolist()


def test_cifar_pickle_md5_mismatch_names_file(tmp_path):
    write_cifar_pickles(tmp_path)
    with pytest.raises(DatasetError, match=r"batches\.meta.*md5"):
        cifar10.load_cifar10(tmp_path, None)  # tiny files cannot have the official md5s


def test_cifar_pickle_corrupt_and_missing_batch(tmp_path):
    write_cifar_pickles(tmp_path)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match=r"corrupt CIFAR-10 file .*data_batch_3"):
        cifar10.load_cifar10(tmp_path, None, verify_md5=False)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"missing: .*data_batch_3"):
        cifar10.load_cifar10(tmp_path, None, verify_md5=False)
    # wrong array shape
    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(DatasetError, match=r"data_batch_3.*3072"):
        cifar10.load_cifar10(tmp_path, None, verify_md5=False)


def test_cifar_missing_dataset_names_layout_and_download(tmp_path):
    with pytest.raises(DatasetError) as err:
        cifar10.load_cifar10(tmp_path, None)
    msg = str(err.value)
    assert str(tmp_path / "cifar10") in msg
    assert "cifar-10-batches-py" in msg and "train/<class>" in msg and "--download" in msg


def test_cifar_download_route_uses_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train=True, download=False):
            calls.append((Path(root), train, download))
            if not (Path(root) / "cifar-10-batches-py").exists():
                write_cifar_pickles(Path(root).parent, n=2)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    ds = cifar10.load_cifar10(tmp_path, None, download=True, verify_md5=False)
    assert calls and all(root == tmp_path / "cifar10" and dl for root, _, dl in calls)
    assert ds.source["route"] == "torchvision-download+pickle"
    assert len(ds.train) == 10 and len(ds.test) == 2


# ------------------------------------------------------------------------------------------
# CIFAR-10, ImageFolder tree (JPEG and PNG) and the decode cache
# ------------------------------------------------------------------------------------------
def write_imagefolder(base: Path, per_class: dict[str, int], seed: int = 0, fmt: str = "JPEG") -> None:
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for cls in CLASSES:
            d = base / "cifar10" / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                ext = "jpg" if fmt == "JPEG" else "png"
                Image.fromarray(img).save(d / f"{i:04d}.{ext}", format=fmt)


def pil_decode(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def test_cifar_imagefolder_jpeg_matches_pil_and_labels_are_alphabetical(tmp_path):
    write_imagefolder(tmp_path, {"train": 2, "test": 1})
    ds = cifar10.load_cifar10(tmp_path, tmp_path / "cache")
    assert ds.source["route"] == "imagefolder" and ds.source["files"] == 30
    assert len(ds.train) == 20 and len(ds.test) == 10
    assert ds.train.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert ds.test.labels.tolist() == list(range(10))
    for idx, (cls, name) in {0: ("airplane", "0000.jpg"), 11: ("dog", "0001.jpg"), 13: ("frog", "0001.jpg")}.items():
        expected = pil_decode(tmp_path / "cifar10" / "train" / cls / name).float() / 255
        assert torch.equal(ds.train.inputs[idx], expected)
    assert 0.0 <= ds.train.inputs.min() and ds.train.inputs.max() <= 1.0


def test_cifar_imagefolder_png_exact_pixels(tmp_path):
    write_imagefolder(tmp_path, {"train": 1, "test": 1}, seed=3, fmt="PNG")
    ds = cifar10.load_cifar10(tmp_path, None)
    rng = np.random.default_rng(3)  # regenerate what write_imagefolder drew (train first)
    first = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert torch.equal(ds.train.inputs[0], torch.from_numpy(first).permute(2, 0, 1).float() / 255)
    assert ds.source["cache"] == "disabled"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cifar_pil_fallback_decoder_gives_same_pixels(tmp_path, monkeypatch):
    write_imagefolder(tmp_path, {"train": 1, "test": 1}, seed=4)
    path = tmp_path / "cifar10" / "train" / "cat" / "0000.jpg"
    tv_id, tv_decode = cifar10._decoder()
    monkeypatch.setitem(sys.modules, "torchvision.io", None)  # import now fails -> PIL
    pil_id, pil_decode_fn = cifar10._decoder()
    assert tv_id.startswith("torchvision") and pil_id.startswith("PIL")
    assert torch.equal(pil_decode_fn(path), tv_decode(path))
    ds = cifar10.load_cifar10(tmp_path, tmp_path / "cache")
    assert ds.source["decoder"] == pil_id and len(ds.train) == 10


def test_cifar_forced_source_errors(tmp_path):
    write_imagefolder(tmp_path, {"train": 1, "test": 1})
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        cifar10.load_cifar10(tmp_path, None, source="pickle")
    with pytest.raises(DatasetError, match="source must be one of"):
        cifar10.load_cifar10(tmp_path, None, source="jpeg")
    other = tmp_path / "p"
    write_cifar_pickles(other)
    with pytest.raises(DatasetError, match="ImageFolder tree not found"):
        cifar10.load_cifar10(other, None, source="imagefolder")


def test_cifar_cache_reuse_and_invalidation(tmp_path):
    write_imagefolder(tmp_path, {"train": 1, "test": 1}, fmt="PNG")
    cache = tmp_path / "cache"
    first = cifar10.load_cifar10(tmp_path, cache)
    assert first.source["cache"] == "miss" and Path(first.source["cache_file"]).is_file()
    second = cifar10.load_cifar10(tmp_path, cache)
    assert second.source["cache"] == "hit"
    assert second.source["cache_file"] == first.source["cache_file"]
    assert torch.equal(first.train.inputs, second.train.inputs)
    assert not list((cache / "cifar10").glob("*.tmp"))  # atomic write left nothing behind

    # a changed file (new content, new size/mtime) must not reuse the stale entry
    target = tmp_path / "cifar10" / "train" / "bird" / "0000.png"
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = cifar10.load_cifar10(tmp_path, cache)
    assert third.source["cache"] == "miss"
    assert torch.allclose(third.train.inputs[2], torch.full((3, 32, 32), 7 / 255))
    # an added file changes the file list
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "cifar10" / "test" / "cat" / "0009.png")
    fourth = cifar10.load_cifar10(tmp_path, cache)
    assert fourth.source["cache"] == "miss" and len(fourth.test) == 11

    # the same relative files under another root (another source) never share an entry
    other = tmp_path / "other"
    write_imagefolder(other, {"train": 1, "test": 1}, seed=5, fmt="PNG")
    fifth = cifar10.load_cifar10(other, cache)
    assert fifth.source["cache"] == "miss" and fifth.source["cache_file"] != fourth.source["cache_file"]


def test_cache_rebuilds_unreadable_entry(tmp_path):
    key = {"what": "x"}
    built = []

    def build():
        built.append(1)
        return {"x": torch.arange(3)}

    r1 = cache_mod.load_or_build(tmp_path, "ns", key, build)
    assert r1.status == "miss" and r1.path.is_file()
    r1.path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache"):
        r2 = cache_mod.load_or_build(tmp_path, "ns", key, build)
    assert r2.status == "miss" and torch.equal(r2.payload["x"], torch.arange(3)) and len(built) == 2
    r3 = cache_mod.load_or_build(tmp_path, "ns", key, build)
    assert r3.status == "hit" and len(built) == 2
    assert cache_mod.load_or_build(tmp_path, "ns", {"what": "y"}, build).status == "miss"


def test_fingerprint_depends_on_path_size_and_mtime(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"123")
    fp1 = cache_mod.fingerprint_files(tmp_path, [a])
    assert cache_mod.fingerprint_files(tmp_path, [a]) == fp1
    os.utime(a, ns=(0, 10**9))
    fp2 = cache_mod.fingerprint_files(tmp_path, [a])
    assert fp2 != fp1
    a.write_bytes(b"1234")
    os.utime(a, ns=(0, 10**9))
    assert cache_mod.fingerprint_files(tmp_path, [a]) != fp2


def test_cifar_imagefolder_corrupt_jpeg_and_wrong_classes(tmp_path):
    write_imagefolder(tmp_path, {"train": 1, "test": 1})
    bad = tmp_path / "cifar10" / "test" / "ship" / "0000.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DatasetError, match=r"corrupt CIFAR-10 image .*ship.0000\.jpg"):
        cifar10.load_cifar10(tmp_path, None)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(bad, format="JPEG")
    with pytest.raises(DatasetError, match=r"0000\.jpg.*size"):
        cifar10.load_cifar10(tmp_path, None)
    (tmp_path / "cifar10" / "train" / "truck").rename(tmp_path / "cifar10" / "train" / "lorry")
    with pytest.raises(DatasetError, match=r"class folders .*lorry"):
        cifar10.load_cifar10(tmp_path, None)


# ------------------------------------------------------------------------------------------
# MNIST IDX files
# ------------------------------------------------------------------------------------------
def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def write_mnist(folder: Path, split: str, n: int, gz: bool = True, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    prefix = "train" if split == "train" else "t10k"
    for stem, arr, magic in [(f"{prefix}-images-idx3-ubyte", images, 2051),
                             (f"{prefix}-labels-idx1-ubyte", labels, 2049)]:
        data = idx_bytes(arr, magic)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return images, labels


def test_mnist_test_only_gz(tmp_path):
    images, labels = write_mnist(tmp_path / "MNIST" / "raw", "test", 5)
    ds = mnist.load_mnist(tmp_path, None, verify_md5=False)
    assert len(ds.train) == 0 and ds.train.inputs.shape == (0, 1, 28, 28)
    assert "absent" in ds.source["splits"]["train"] and "0 examples" in ds.source["splits"]["train"]
    assert ds.test.inputs.shape == (5, 1, 28, 28)
    assert ds.test.labels.tolist() == labels.tolist()
    assert ds.test.inputs[2, 0, 3, 4].item() == pytest.approx(images[2, 3, 4] / 255.0)


def test_mnist_md5_mismatch_on_official_name(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", "test", 5)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: md5"):
        mnist.load_mnist(tmp_path, None)


def test_mnist_raw_files_both_splits_lowercase_folder(tmp_path):
    folder = tmp_path / "mnist" / "raw"
    tr_images, tr_labels = write_mnist(folder, "train", 4, gz=False, seed=1)
    write_mnist(folder, "test", 3, gz=False, seed=2)
    ds = mnist.load_mnist(tmp_path, None)  # raw names carry no official md5 to check
    assert len(ds.train) == 4 and len(ds.test) == 3 and ds.source["md5_verified"] == []
    assert torch.equal(ds.train.inputs[:, 0], torch.from_numpy(tr_images).float() / 255)
    assert ds.train.labels.tolist() == tr_labels.tolist()


@pytest.mark.parametrize("damage, pattern", [
    ("magic", r"t10k-images-idx3-ubyte.*magic number 0x00000802"),
    ("truncate", r"t10k-images-idx3-ubyte.*bytes"),
    ("count", r"10 images but 5 labels"),
    ("gzip", r"t10k-images-idx3-ubyte\.gz.*decompress"),
])
def test_mnist_corrupt_files_named(tmp_path, damage, pattern):
    folder = tmp_path / "MNIST" / "raw"
    write_mnist(folder, "test", 5, gz=damage == "gzip")
    img = folder / "t10k-images-idx3-ubyte"
    if damage == "magic":
        img.write_bytes(struct.pack(">I", 0x802) + img.read_bytes()[4:])
    elif damage == "truncate":
        img.write_bytes(img.read_bytes()[:-10])
    elif damage == "count":
        img.write_bytes(idx_bytes(np.zeros((10, 28, 28), np.uint8), 2051))
    elif damage == "gzip":
        gz = folder / "t10k-images-idx3-ubyte.gz"
        gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(DatasetError, match=pattern):
        mnist.load_mnist(tmp_path, None, verify_md5=False)


def test_mnist_missing_partner_and_missing_dataset(tmp_path):
    with pytest.raises(DatasetError) as err:
        mnist.load_mnist(tmp_path, None)
    assert "MNIST/raw" in str(err.value) and "--download" in str(err.value)
    folder = tmp_path / "MNIST" / "raw"
    write_mnist(folder, "test", 2)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing: .*t10k-labels-idx1-ubyte"):
        mnist.load_mnist(tmp_path, None, verify_md5=False)


def test_mnist_download_route_uses_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeMNIST:
        def __init__(self, root, train=True, download=False):
            calls.append((Path(root), train, download))
            write_mnist(Path(root) / "MNIST" / "raw", "train" if train else "test", 3, gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    ds = mnist.load_mnist(tmp_path, None, download=True)
    assert {c[1] for c in calls} == {True, False} and all(c[0] == tmp_path and c[2] for c in calls)
    assert len(ds.train) == 3 and len(ds.test) == 3


# ------------------------------------------------------------------------------------------
# FSDD WAV files
# ------------------------------------------------------------------------------------------
def write_fsdd(base: Path, digits=(0, 1, 2), speakers=("alice", "bob"), indices=range(7), seed=0):
    import soundfile as sf

    folder = base / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for d in digits:
        for s in speakers:
            for i in indices:
                pcm = rng.integers(-32768, 32767, size=int(rng.integers(100, 400)), dtype=np.int16)
                sf.write(folder / f"{d}_{s}_{i}.wav", pcm, 8000, subtype="PCM_16")
                written[(d, s, i)] = pcm
    return written


def test_fsdd_split_labels_and_samples(tmp_path):
    written = write_fsdd(tmp_path)
    ds = fsdd.load_fsdd(tmp_path, None)
    assert ds.modality == "audio" and ds.sample_rate == 8000
    assert len(ds.test) == 3 * 2 * 5 and len(ds.train) == 3 * 2 * 2
    assert ds.test.labels.tolist() == [d for d in range(3) for _ in range(10)]
    # order: (digit, speaker, index); test = index 0..4, train = index 5, 6
    assert torch.allclose(ds.train.inputs[0], torch.from_numpy(written[(0, "alice", 5)] / 32768.0).float())
    assert torch.allclose(ds.test.inputs[-1], torch.from_numpy(written[(2, "bob", 4)] / 32768.0).float())
    assert all(w.dtype == torch.float32 and w.dim() == 1 and w.abs().max() <= 1 for w in ds.train.inputs)
    assert ds.source["speakers"] == ["alice", "bob"] and ds.source["files"] == 42


def test_fsdd_resamples_other_rates(tmp_path):
    import soundfile as sf

    write_fsdd(tmp_path, digits=(0,), speakers=("a",), indices=range(1))
    t = np.arange(16000) / 16000
    sf.write(tmp_path / "fsdd" / "recordings" / "0_a_5.wav", 0.5 * np.sin(2 * np.pi * 300 * t), 16000)
    ds = fsdd.load_fsdd(tmp_path, None)
    (w,) = ds.train.inputs
    assert len(w) == 8000
    expected = 0.5 * np.sin(2 * np.pi * 300 * np.arange(8000) / 8000)
    assert np.abs(w.numpy()[200:-200] - expected[200:-200]).max() < 0.01


def test_fsdd_errors(tmp_path):
    with pytest.raises(DatasetError) as err:
        fsdd.load_fsdd(tmp_path, None)
    assert "fsdd/recordings" in str(err.value) and "free-spoken-digit-dataset" in str(err.value)
    write_fsdd(tmp_path, digits=(0,), speakers=("a",), indices=range(2))
    (tmp_path / "fsdd" / "recordings" / "0_a_1.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(DatasetError, match=r"corrupt FSDD file .*0_a_1\.wav"):
        fsdd.load_fsdd(tmp_path, None)
    (tmp_path / "fsdd" / "recordings" / "0_a_1.wav").unlink()
    (tmp_path / "fsdd" / "recordings" / "zero-a.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"zero-a\.wav"):
        fsdd.load_fsdd(tmp_path, None)


# ------------------------------------------------------------------------------------------
# SST-2 TSV files
# ------------------------------------------------------------------------------------------
def write_tsv(path: Path, rows, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = newline.join(["sentence\tlabel"] + [f"{s}\t{y}" for s, y in rows]) + newline
    path.write_bytes(text.encode("utf-8"))


TRAIN_ROWS = [('it \'s a "charming" film ', 1), ("dull , dull , dull", 0), ("crème brûlée", 1)]
DEV_ROWS = [("a masterpiece .", 1), ("not good .", 0)]


def test_sst2_reads_glue_tsv_exactly(tmp_path):
    write_tsv(tmp_path / "sst2" / "train.tsv", TRAIN_ROWS)
    write_tsv(tmp_path / "sst2" / "dev.tsv", DEV_ROWS)
    ds = sst2.load_sst2(tmp_path, None)
    assert ds.modality == "text" and ds.classes == ["negative", "positive"]
    assert ds.train.inputs == [s for s, _ in TRAIN_ROWS]  # quotes and trailing space kept
    assert ds.train.labels.tolist() == [1, 0, 1]
    assert ds.test.inputs == [s for s, _ in DEV_ROWS] and ds.test.labels.tolist() == [1, 0]


def test_sst2_syntactic_crlf_and_eval_split(tmp_path):
    base = tmp_path / "sst2-syntactic" / "clean"
    write_tsv(base / "train.tsv", TRAIN_ROWS, "\r\n")
    write_tsv(base / "dev.tsv", DEV_ROWS, "\r\n")
    write_tsv(base / "test.tsv", [("fine .", 1)], "\r\n")
    ds = sst2.load_sst2_syntactic(tmp_path, None)
    assert ds.train.inputs[1] == "dull , dull , dull" and ds.test.inputs == ["fine ."]
    dev = sst2.load_sst2_syntactic(tmp_path, None, eval_split="dev")
    assert dev.test.inputs == [s for s, _ in DEV_ROWS] and dev.source["test_file"] == "dev.tsv"
    with pytest.raises(DatasetError, match="eval_split"):
        sst2.load_sst2_syntactic(tmp_path, None, eval_split="train")


def test_sst2_errors_name_file_and_line(tmp_path):
    with pytest.raises(DatasetError) as err:
        sst2.load_sst2(tmp_path, None)
    assert "train.tsv" in str(err.value) and "dev.tsv" in str(err.value) and "SST-2.zip" in str(err.value)
    write_tsv(tmp_path / "sst2" / "train.tsv", TRAIN_ROWS + [("oops", 2)])
    write_tsv(tmp_path / "sst2" / "dev.tsv", DEV_ROWS)
    with pytest.raises(DatasetError, match=r"train\.tsv, line 5"):
        sst2.load_sst2(tmp_path, None)
    (tmp_path / "sst2" / "train.tsv").write_text("text\tlabel\nok\t1\n")
    with pytest.raises(DatasetError, match=r"train\.tsv: header"):
        sst2.load_sst2(tmp_path, None)
    (tmp_path / "sst2" / "dev.tsv").unlink()
    write_tsv(tmp_path / "sst2" / "train.tsv", TRAIN_ROWS)
    with pytest.raises(DatasetError, match=r"missing file .*dev\.tsv"):
        sst2.load_sst2(tmp_path, None)


# ------------------------------------------------------------------------------------------
# Real data (../shared/datasets), skipped when absent
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def real_cifar(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cifar_cache")
    t0 = time.perf_counter()
    first = cifar10.load_cifar10(REAL, cache)
    decode_s = time.perf_counter() - t0
    return first, cache, decode_s


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "cifar10" / "train").is_dir(), reason="real CIFAR-10 absent")
def test_real_cifar10_counts_pixels_and_cache(real_cifar):
    ds, cache, decode_s = real_cifar
    assert ds.source["route"] == "imagefolder" and ds.source["files"] == 60_000
    assert ds.train.inputs.shape == (50_000, 3, 32, 32) and ds.test.inputs.shape == (10_000, 3, 32, 32)
    assert torch.bincount(ds.train.labels).tolist() == [5000] * 10
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10
    base = REAL / "cifar10"
    for split, idx, cls, name in [("train", 0, "airplane", "0000.jpg"), ("train", 6 * 5000 + 17, "frog", None),
                                  ("test", 9999, "truck", None)]:
        files = sorted(p.name for p in (base / split / cls).iterdir())
        name = name or files[idx % (5000 if split == "train" else 1000)]
        x = getattr(ds, split).inputs[idx]
        assert torch.equal(x, pil_decode(base / split / cls / name).float() / 255)
    again = cifar10.load_cifar10(REAL, cache)
    assert again.source["cache"] == "hit"
    assert torch.equal(again.test.inputs[:100], ds.test.inputs[:100])


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "MNIST" / "raw").is_dir(), reason="real MNIST absent")
def test_real_mnist_test_split():
    for name, md5 in [("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                      ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")]:
        assert hashlib.md5((REAL / "MNIST" / "raw" / name).read_bytes()).hexdigest() == md5
    ds = mnist.load_mnist(REAL, None)
    assert len(ds.train) == 0 and len(ds.test) == 10_000
    assert int((ds.test.labels == 0).sum()) == 980
    assert sorted(ds.source["md5_verified"]) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert ds.test.inputs.min() == 0.0 and ds.test.inputs.max() == 1.0


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "fsdd" / "recordings").is_dir(), reason="real FSDD absent")
def test_real_fsdd_counts():
    ds = fsdd.load_fsdd(REAL, None)
    assert ds.source["files"] == 3000 and len(ds.train) == 2700 and len(ds.test) == 300
    assert torch.bincount(ds.train.labels).tolist() == [270] * 10
    assert torch.bincount(ds.test.labels).tolist() == [30] * 10
    assert len(ds.source["speakers"]) == 6 and ds.sample_rate == 8000
    assert all(float(w.abs().max()) <= 1.0 for w in ds.test.inputs)


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "sst2").is_dir(), reason="real SST-2 absent")
def test_real_sst2_counts():
    ds = sst2.load_sst2(REAL, None)
    assert len(ds.train) == 67_349 and len(ds.test) == 872
    assert set(ds.test.labels.tolist()) == {0, 1}
    syn = sst2.load_sst2_syntactic(REAL, None)
    assert len(syn.train) == 6_920 and len(syn.test) == 1_821
    assert len(sst2.load_sst2_syntactic(REAL, None, eval_split="dev").test) == 872
    assert not any(s.endswith("\r") for s in syn.train.inputs)


def test_ag_news_reads_the_standard_csv(tmp_path):
    """AG News's CSV release: quoted rows, class 1-4, title + description, backslash escapes."""
    from benchmark.data.ag_news import load_ag_news

    base = tmp_path / "ag_news"
    base.mkdir()
    (base / "train.csv").write_text('"3","Wall St. Bears Claw Back","Reuters - Short-sellers, \\\\band of ultra-cynics"\n'
                                    '"2","Cup final","A ""great"" match, say fans"\n')
    (base / "test.csv").write_text('"4","New chip","Faster, cooler"\n')
    d = load_ag_news(tmp_path)
    assert d.modality == "text" and d.classes == ["World", "Sports", "Business", "Sci/Tech"]
    assert d.train.inputs == ["Wall St. Bears Claw Back Reuters - Short-sellers, band of ultra-cynics",
                              'Cup final A "great" match, say fans']
    assert d.train.labels.tolist() == [2, 1] and d.test.labels.tolist() == [3]
    (base / "test.csv").write_text('"5","x","y"\n')
    with pytest.raises(DatasetError, match="row 1"):
        load_ag_news(tmp_path)
    (base / "test.csv").unlink()
    with pytest.raises(DatasetError, match="missing .*test.csv"):
        load_ag_news(tmp_path)
