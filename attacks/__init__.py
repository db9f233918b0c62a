"""Training-set attacks.  Importing this package registers the in-tree ones.

Registered names: ``cifar-mnist-joint`` (paper 000 Sec. 4.1), ``weber-backdoor`` (one-pixel,
four-pixel, blend; paper 000 Sec. 6.1), ``speech-noise-burst`` (paper 000 Sec. 6.1),
``spectral-pixel``, ``semantic``, ``input-aware``, ``composite`` (paper 001 Sec. 4.1) and
``badnets`` (the field's baseline); ``inverted-digit`` is the quick suite's toy.  Shared pieces: :mod:`attacks.triggers` (trigger math) and
:mod:`attacks.patterns` (poison selection and dataset assembly).
"""
from attacks import (  # noqa: F401  (imported for registration)
    badnets,
    composite,
    input_aware,
    inverted_digit,
    joint_mnist,
    pixel_backdoor,
    semantic,
    spectral_pixel,
    speech_trigger,
)
