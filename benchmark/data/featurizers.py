"""Featurizers: deterministic maps from raw inputs (after any attack) to model inputs.

A featurizer is built as ``cls(**params)`` (unknown keys are rejected through
:func:`benchmark.config.build`), called as ``featurizer(inputs, sample_rate=None) -> Tensor``
(a batch, first dimension = examples) and reports ``output_shape(input_shape)`` -- the shape of
one featurized example -- so that a model can be sized before any data is featurized.

* ``image``: identity on float ``N x C x H x W`` images in ``[0, 1]``, with an optional fixed
  per-channel ``(x - mean) / std`` (default none, as in the reference code: "no
  normalization", original_code.md Sec. 4).
* ``tokenizer``: sentences -> ``N x max_length`` int64 token ids of a Hugging Face tokenizer
  (:mod:`benchmark.data.pretrained` resolves the model offline).
* ``log-mel``: fixed-length log-mel spectrogram ``1 x n_mels x n_frames`` of a waveform
  (default ``1 x 64 x 64`` from 1.008 s of 8 kHz audio), the CPU-sized stand-in for the
  512x512 spectrogram images of the original speech setup (attacks_datasets.md Sec. 2).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch

from benchmark.config import ConfigError, build
from benchmark.registry import featurizers


class Featurizer(ABC):
    """Base class: holds a validated ``config`` built from keyword parameters."""

    name: ClassVar[str]
    modality: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, **params: Any) -> None:
        self.config = build(self.Config, params, what=f"featurizer {self.name!r}")

    @abstractmethod
    def __call__(self, inputs: Any, sample_rate: int | None = None) -> torch.Tensor: ...

    @abstractmethod
    def output_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, ...]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def build_featurizer(name: str, params: Mapping[str, Any] | None = None) -> Featurizer:
    """Build registered featurizer ``name`` with ``params``."""
    return featurizers.get(name)(**dict(params or {}))


# -- images --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageConfig:
    mean: tuple[float, ...] | None = None  # per channel; None = no normalisation (reference-code)
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ConfigError("image featurizer: give both mean and std, or neither")
        if self.mean is not None:
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))  # type: ignore[union-attr]
            if len(self.mean) != len(self.std) or not self.mean:
                raise ConfigError(f"image featurizer: mean {self.mean} and std {self.std} must have "
                                 f"one value per channel")
            if any(s <= 0 for s in self.std):  # type: ignore[union-attr]
                raise ConfigError(f"image featurizer: std values must be > 0, got {self.std}")


@featurizers.register("image", "Identity on [0,1] image tensors, optional fixed per-channel mean/std")
class ImageFeaturizer(Featurizer):
    name = "image"
    modality = "image"
    Config = ImageConfig

    def __call__(self, inputs: Any, sample_rate: int | None = None) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
            got = f"{type(inputs).__name__} {tuple(getattr(inputs, 'shape', ()))}"
            raise ValueError(f"image featurizer expects a float N x C x H x W tensor, got {got}")
        cfg = self.config
        if cfg.mean is None:
            return inputs
        if inputs.shape[1] != len(cfg.mean):
            raise ValueError(f"image featurizer: {len(cfg.mean)} mean/std values for "
                             f"{inputs.shape[1]} channels")
        mean = torch.tensor(cfg.mean, dtype=inputs.dtype).view(1, -1, 1, 1)
        std = torch.tensor(cfg.std, dtype=inputs.dtype).view(1, -1, 1, 1)
        return (inputs - mean) / std

    def output_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        if input_shape is None or len(input_shape) != 3:
            raise ValueError(f"image featurizer: output_shape needs the C x H x W input shape, "
                             f"got {input_shape}")
        return tuple(int(v) for v in input_shape)


# -- audio ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = 8000  # FSDD's native rate (dataset README); other rates are resampled
    n_fft: int = 256  # ours: smallest power of two >= win_length
    win_length: int = 200  # ours: 25 ms at 8 kHz, the usual speech analysis window
    hop_length: int = 128  # ours: 16 ms, so n_frames=64 spans 1.008 s (covers >99% of FSDD clips)
    n_mels: int = 64  # ours: 64 mel bands (no empty filter at n_fft=256, 8 kHz)
    n_frames: int = 64  # ours: fixed width -> 1 x 64 x 64 speech-cnn input
    f_min: float = 0.0  # torchaudio default
    f_max: float | None = None  # None = sample_rate / 2 (torchaudio default)
    log_offset: float = 1e-6  # ours: log(mel power + offset); silence -> log(1e-6) = -13.8

    def __post_init__(self) -> None:
        for key in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_frames"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"log-mel featurizer: {key} must be >= 1, got {getattr(self, key)}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"log-mel featurizer: win_length {self.win_length} > n_fft {self.n_fft}")
        if self.log_offset <= 0:
            raise ConfigError(f"log-mel featurizer: log_offset must be > 0, got {self.log_offset}")

    @property
    def num_samples(self) -> int:
        """Waveforms are zero-padded at the end / cropped to this length (with ``center=True``
        the STFT then yields exactly ``1 + num_samples // hop_length = n_frames`` frames)."""
        return (self.n_frames - 1) * self.hop_length


@featurizers.register("log-mel", "Fixed-length log-mel spectrogram 1 x n_mels x n_frames (default 1x64x64 at 8 kHz)")
class LogMelFeaturizer(Featurizer):
    """``log(MelSpectrogram(pad_or_crop(x)) + log_offset)``.

    Each waveform keeps its *first* ``num_samples`` samples (zero-padded at the end when
    shorter), so a trigger prepended to the utterance (attacks_datasets.md Sec. 2) is never
    cropped away.  Mel power spectrogram: torchaudio defaults otherwise (Hann window,
    ``center=True`` reflect padding, power 2, HTK mel scale, no filter normalisation).
    """

    name = "log-mel"
    modality = "audio"
    Config = LogMelConfig
    #: Waveforms per STFT call (ours: bounds the complex STFT buffer to ~25 MB).
    CHUNK = 256

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        import torchaudio

        c = self.config
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.win_length,
            hop_length=c.hop_length, f_min=c.f_min, f_max=c.f_max, n_mels=c.n_mels, power=2.0,
            center=True)

    def fixed_length(self, inputs: Any, sample_rate: int | None) -> torch.Tensor:
        """``B x num_samples`` float32 batch: resampled, cropped/zero-padded at the end."""
        c = self.config
        if sample_rate is None:
            raise ValueError("log-mel featurizer needs the waveforms' sample rate: pass "
                             "sample_rate=<RawDataset.sample_rate>")
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 2:
            waves = list(inputs)
        elif isinstance(inputs, (list, tuple)):
            waves = [torch.as_tensor(w, dtype=torch.float32) for w in inputs]
        else:
            raise ValueError(f"log-mel featurizer expects a list of 1-D waveforms or a B x T tensor, "
                             f"got {type(inputs).__name__} {tuple(getattr(inputs, 'shape', ()))}")
        out = torch.zeros(len(waves), c.num_samples, dtype=torch.float32)
        for i, w in enumerate(waves):
            if w.dim() != 1:
                raise ValueError(f"log-mel featurizer: waveform {i} has shape {tuple(w.shape)}, "
                                 f"expected 1-D")
            w = w.to(torch.float32)
            if sample_rate != c.sample_rate:
                import torchaudio.functional as AF
                w = AF.resample(w, int(sample_rate), c.sample_rate)
            n = min(len(w), c.num_samples)
            out[i, :n] = w[:n]
        return out

    def __call__(self, inputs: Any, sample_rate: int | None = None) -> torch.Tensor:
        batch = self.fixed_length(inputs, sample_rate)
        c = self.config
        if len(batch) == 0:
            return torch.empty(0, *self.output_shape())
        parts = [torch.log(self._mel(chunk) + c.log_offset) for chunk in batch.split(self.CHUNK)]
        feats = torch.cat(parts).unsqueeze(1)
        assert feats.shape[1:] == self.output_shape(), (feats.shape, self.output_shape())
        return feats

    def output_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        return (1, self.config.n_mels, self.config.n_frames)


# -- text ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenizerConfig:
    pretrained: str = "all-MiniLM-L6-v2"  # ours: the offline default (benchmark.data.pretrained)
    max_length: int = 64  # ours: covers > 99 % of SST-2 sentences in MiniLM WordPieces (99th pct 55)

    def __post_init__(self) -> None:
        if int(self.max_length) < 3:
            raise ConfigError(f"tokenizer featurizer: max_length must be >= 3 ([CLS] w [SEP]), "
                              f"got {self.max_length}")


@featurizers.register("tokenizer", "Hugging Face tokenizer: sentences -> N x max_length int64 token ids, "
                                   "right-padded with the pad id")
class TokenizerFeaturizer(Featurizer):
    """``N x max_length`` int64 token ids (special tokens added, truncated, right-padded with the
    model's pad id).  The attention mask is ``ids != pad_id``, recomputed by the ``hf-text`` model,
    so one tensor carries an example and the trainer and engines stay modality-blind."""

    name = "tokenizer"
    modality = "text"
    Config = TokenizerConfig

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from benchmark.data import pretrained

        self._tok = pretrained.load_tokenizer(self.config.pretrained)
        pad = self._tok.pad_token_id
        model_pad = pretrained.load_config(self.config.pretrained).pad_token_id
        if pad is None or (model_pad is not None and pad != model_pad):
            raise ValueError(f"tokenizer of {self.config.pretrained!r}: pad token id {pad} differs from "
                             f"the model config's pad_token_id {model_pad}; the hf-text model masks "
                             f"padding by that id")
        self.pad_id = int(pad)

    def __call__(self, inputs: Any, sample_rate: int | None = None) -> torch.Tensor:
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(s, str) for s in inputs):
            raise ValueError(f"tokenizer featurizer expects a list of strings, got {type(inputs).__name__}")
        enc = self._tok(list(inputs), padding="max_length", truncation=True,
                        max_length=int(self.config.max_length), return_tensors="pt")
        return enc["input_ids"].to(torch.long)

    def output_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        return (int(self.config.max_length),)
