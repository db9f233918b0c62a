"""The espeak-ng spoken-digit dataset: deterministic from its recipe, cached, FSDD-like."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from benchmark.data.espeak_digits import SAMPLE_RATE, load_espeak_digits
from benchmark.data.types import DatasetError
from benchmark.registry import datasets

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


@needs_espeak
def test_deterministic_cached_and_split(tmp_path):
    kw = dict(n_speakers=2, clips_per_digit=3, n_test=1, seed=5)
    a = load_espeak_digits(Path("."), tmp_path / "c1", **kw)
    b = load_espeak_digits(Path("."), tmp_path / "c2", **kw)  # generated again, elsewhere
    assert a.fingerprint() == b.fingerprint()
    assert len(a.train.labels) == 10 * 2 * 2 and len(a.test.labels) == 10 * 2 * 1
    assert torch.bincount(a.test.labels).tolist() == [2] * 10
    assert a.sample_rate == SAMPLE_RATE and all(x.abs().max() <= 1.0 for x in a.train.inputs)
    assert list((tmp_path / "c1" / "espeak-digits").glob("*.pt"))
    c = load_espeak_digits(Path("."), tmp_path / "c1", **{**kw, "seed": 6})
    assert c.fingerprint() != a.fingerprint()
    assert datasets.get("espeak-digits") is load_espeak_digits


def test_clear_error_without_espeak(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(DatasetError, match="apt-get install espeak-ng"):
        load_espeak_digits(Path("."), tmp_path, n_speakers=1, clips_per_digit=2, n_test=1)
