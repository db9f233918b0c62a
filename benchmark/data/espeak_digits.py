"""``espeak-digits``: spoken digits 0-9 synthesised offline with many voices (issue 14 item 2b).

Paper 000's speech backdoor runs on Liu et al.'s synthesised spoken digits; FSDD has six human
speakers, whose identity dominates gradient similarity.  This dataset is closer to Liu et al.'s:
the words "zero" .. "nine" spoken by Debian's ``espeak-ng`` (``apt-get install espeak-ng``) with
``n_speakers`` synthetic speakers, each a fixed (voice, variant, pitch, speed) drawn from the
seed, and per clip a jitter of pitch and speed and additive white noise at a random SNR; 8 kHz
mono float32 in [-1, 1] like FSDD.  Split as FSDD: clip index < ``n_test`` of each (speaker,
digit) is test, the rest train.  Generated deterministically from ``seed`` and the recipe (the
record of every clip's settings is in ``source["recipe"]``) and cached under
``<cache_dir>/espeak-digits/<recipe hash>.pt``.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.config import stable_hash
from benchmark.data.types import DatasetError, RawDataset, Split
from benchmark.registry import datasets

SAMPLE_RATE = 8000
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: espeak-ng English voices and variants the speakers are drawn from (ours)
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
GENERATOR_VERSION = 1  # bump when the recipe's meaning changes


@dataclass(frozen=True)
class Recipe:
    """How the clips are synthesised (every field ours)."""

    n_speakers: int = 30
    clips_per_digit: int = 10  # per speaker
    n_test: int = 2  # clip index < n_test of each (speaker, digit) -> test
    pitch: tuple[int, int] = (20, 80)  # espeak-ng -p range of a speaker's base pitch
    speed: tuple[int, int] = (120, 200)  # -s (words per minute) range of a speaker's base speed
    pitch_jitter: int = 8  # per clip, uniform +-
    speed_jitter: int = 15
    snr_db: tuple[float, float] = (15.0, 40.0)  # additive white noise, per clip
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_speakers < 1 or self.clips_per_digit < 1 or not 0 < self.n_test < self.clips_per_digit:
            raise ValueError("espeak-digits needs n_speakers >= 1 and 0 < n_test < clips_per_digit")


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DatasetError("espeak-digits needs the espeak-ng synthesiser, which is not installed: "
                           "`apt-get install espeak-ng` (Debian / Ubuntu)")
    return exe


def synthesise(word: str, voice: str, variant: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    """One utterance from espeak-ng: float32 mono samples and their rate."""
    import soundfile as sf

    res = subprocess.run([_espeak(), "-v", f"{voice}+{variant}", "-p", str(pitch), "-s", str(speed),
                          "--stdout", word], capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        raise DatasetError(f"espeak-ng failed for {word!r} with voice {voice}+{variant}: "
                           f"{res.stderr.decode(errors='replace')[-300:]}")
    x, sr = sf.read(io.BytesIO(res.stdout), dtype="float32", always_2d=True)
    return x[:, 0].copy(), int(sr)


def generate(recipe: Recipe) -> tuple[list[torch.Tensor], list[int], list[bool], list[dict]]:
    """Every clip (waveform, digit, is_test, settings), in (digit, speaker, index) order."""
    import torchaudio.functional as AF

    rng = np.random.default_rng(recipe.seed)
    speakers = [{"voice": VOICES[rng.integers(len(VOICES))], "variant": VARIANTS[rng.integers(len(VARIANTS))],
                 "pitch": int(rng.integers(recipe.pitch[0], recipe.pitch[1] + 1)),
                 "speed": int(rng.integers(recipe.speed[0], recipe.speed[1] + 1))}
                for _ in range(recipe.n_speakers)]
    xs, ys, test, settings = [], [], [], []
    for digit, word in enumerate(WORDS):
        for s, spk in enumerate(speakers):
            for i in range(recipe.clips_per_digit):
                pitch = int(np.clip(spk["pitch"] + rng.integers(-recipe.pitch_jitter, recipe.pitch_jitter + 1), 0, 99))
                speed = int(max(80, spk["speed"] + rng.integers(-recipe.speed_jitter, recipe.speed_jitter + 1)))
                snr = float(rng.uniform(*recipe.snr_db))
                x, sr = synthesise(word, spk["voice"], spk["variant"], pitch, speed)
                w = AF.resample(torch.from_numpy(x), sr, SAMPLE_RATE) if sr != SAMPLE_RATE else torch.from_numpy(x)
                power = float((w ** 2).mean()) or 1e-12
                noise = torch.from_numpy(rng.standard_normal(len(w)).astype(np.float32)) * (power / 10 ** (snr / 10)) ** 0.5
                w = (w + noise).clamp(-1.0, 1.0).contiguous()
                xs.append(w)
                ys.append(digit)
                test.append(i < recipe.n_test)
                settings.append({"speaker": s, "index": i, "pitch": pitch, "speed": speed, "snr_db": round(snr, 3)})
    return xs, ys, test, [{"speakers": speakers}, *settings]


@datasets.register("espeak-digits", "Spoken digits 0-9 synthesised offline by espeak-ng with many voices, "
                                    "pitch / speed jitter and noise (issue 14 item 2b)")
def load_espeak_digits(data_root: Path, cache_dir: Path | None = None, download: bool = False,
                       n_speakers: int = 30, clips_per_digit: int = 10, n_test: int = 2, seed: int = 0) -> RawDataset:
    recipe = Recipe(n_speakers=n_speakers, clips_per_digit=clips_per_digit, n_test=n_test, seed=seed)
    key = stable_hash({"recipe": asdict(recipe), "version": GENERATOR_VERSION})
    path = Path(cache_dir) / "espeak-digits" / f"{key}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        blob = torch.load(path, weights_only=True)
    else:
        xs, ys, test, settings = generate(recipe)
        blob = {"xs": xs, "ys": ys, "test": test, "settings": settings}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(blob, tmp)
            tmp.replace(path)
    xs, ys, test = blob["xs"], blob["ys"], blob["test"]
    tr = [i for i, t in enumerate(test) if not t]
    te = [i for i, t in enumerate(test) if t]
    return RawDataset(
        name="espeak-digits", modality="audio", classes=[str(d) for d in range(10)],
        train=Split([xs[i] for i in tr], torch.tensor([ys[i] for i in tr], dtype=torch.long)),
        test=Split([xs[i] for i in te], torch.tensor([ys[i] for i in te], dtype=torch.long)),
        sample_rate=SAMPLE_RATE,
        source={"route": "espeak-ng", "recipe": asdict(recipe), "generator_version": GENERATOR_VERSION,
                "speakers": blob["settings"][0]["speakers"], "cache_key": key},
    )
