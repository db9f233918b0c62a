"""``fsdd``: Free Spoken Digit Dataset (spoken digits 0-9, 8 kHz mono WAV).

Files: ``<data_root>/fsdd/recordings/{digit}_{speaker}_{index}.wav`` read with ``soundfile``
(``torchaudio.load`` needs ``torchcodec``).  Standard split (dataset README): index 0-4 of each
(speaker, digit) is test, 5-49 train.  Waveforms are float32 in ``[-1, 1]`` at 8 kHz (files
at another rate are resampled with ``torchaudio.functional.resample``; stereo is averaged).
Order within a split: by (digit, speaker, index).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from benchmark.data.cache import fingerprint_files
from benchmark.data.types import DatasetError, RawDataset, Split
from benchmark.registry import datasets

FOLDER = "fsdd/recordings"
#: Native rate of the FSDD recordings (dataset README).
SAMPLE_RATE = 8000
#: Recordings with index < TEST_MAX_INDEX are the test split (dataset README: "0-4 test").
TEST_MAX_INDEX = 5
NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")
URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"


def layout_help(data_root: Path) -> str:
    return (f"Expected WAV files {data_root}/{FOLDER}/{{digit}}_{{speaker}}_{{index}}.wav. "
            f"Automatic download is not supported: clone {URL} and copy (or link) its "
            f"recordings/ folder to {data_root}/{FOLDER}.")


def _read(path: Path) -> torch.Tensor:
    import soundfile as sf

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DatasetError(f"corrupt FSDD file {path}: cannot read WAV ({exc})") from exc
    x = torch.from_numpy(wav).mean(dim=1) if wav.shape[1] > 1 else torch.from_numpy(wav[:, 0].copy())
    if len(x) == 0:
        raise DatasetError(f"corrupt FSDD file {path}: no samples")
    if sr != SAMPLE_RATE:
        import torchaudio.functional as AF
        x = AF.resample(x, sr, SAMPLE_RATE)
    return x.contiguous()


@datasets.register("fsdd", "Free Spoken Digit Dataset: 8 kHz spoken digits 0-9 (2,700 train / 300 test; "
                           "or held_out_speaker: the other speakers train, that one's 500 clips test)")
def load_fsdd(data_root: Path, cache_dir: Path | None = None, download: bool = False,
              held_out_speaker: str | None = None) -> RawDataset:
    """The standard split, or with ``held_out_speaker`` a speaker-held-out split: every clip of
    the other speakers trains, every clip of that speaker tests (so a backdoor's targets and
    non-targets come from a voice the model never trained on)."""
    folder = Path(data_root) / FOLDER
    if download and not folder.is_dir():
        raise DatasetError(f"FSDD cannot be downloaded automatically. {layout_help(data_root)}")
    if not folder.is_dir():
        raise DatasetError(f"FSDD not found: {folder} does not exist. {layout_help(data_root)}")
    rows = []
    for entry in os.scandir(folder):
        if not entry.name.lower().endswith(".wav"):
            continue
        m = NAME.match(entry.name)
        if m is None:
            raise DatasetError(f"unexpected FSDD file name {folder / entry.name}: expected "
                               f"{{digit}}_{{speaker}}_{{index}}.wav")
        rows.append((int(m.group(1)), m.group(2), int(m.group(3)), folder / entry.name))
    if not rows:
        raise DatasetError(f"FSDD folder {folder} holds no .wav files. {layout_help(data_root)}")
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    speakers = sorted({r[1] for r in rows})
    if held_out_speaker is not None and held_out_speaker not in speakers:
        raise DatasetError(f"FSDD has no speaker {held_out_speaker!r}; its speakers are {speakers}")

    def split_of(speaker: str, index: int) -> str:
        if held_out_speaker is not None:
            return "test" if speaker == held_out_speaker else "train"
        return "test" if index < TEST_MAX_INDEX else "train"

    splits: dict[str, tuple[list[torch.Tensor], list[int]]] = {"train": ([], []), "test": ([], [])}
    for digit, speaker, index, path in rows:
        xs, ys = splits[split_of(speaker, index)]
        xs.append(_read(path))
        ys.append(digit)
    return RawDataset(
        name="fsdd", modality="audio", classes=[str(d) for d in range(10)],
        train=Split(splits["train"][0], torch.tensor(splits["train"][1], dtype=torch.long)),
        test=Split(splits["test"][0], torch.tensor(splits["test"][1], dtype=torch.long)),
        sample_rate=SAMPLE_RATE,
        source={"route": "wav", "dir": str(folder), "files": len(rows),
                "speakers": speakers,
                "fingerprint": fingerprint_files(folder, [r[3] for r in rows]),
                "split_rule": (f"speaker {held_out_speaker} -> test, the others -> train" if held_out_speaker
                               else f"index < {TEST_MAX_INDEX} -> test")},
    )
