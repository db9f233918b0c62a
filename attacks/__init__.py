"""Training-set attacks.  Importing this package registers the in-tree ones.

One module per registered name (file name = registered name with ``-`` -> ``_``), each class
registered with the ``@attacks.register(...)`` decorator beside it: ``cifar-mnist-joint``
(paper 000 Sec. 4.1), ``weber-backdoor`` (one-pixel, four-pixel, blend; paper 000 Sec. 6.1),
``speech-noise-burst`` (paper 000 Sec. 6.1), ``spectral-pixel``, ``semantic``, ``input-aware``,
``composite`` (paper 001 Sec. 4.1), the NLP backdoors ``text-insert``, ``text-duplicate``,
``text-delete``, ``text-semantic``, ``text-syntactic`` (paper 001 Sec. 4.2; shared pieces in
:mod:`attacks.text_words`) and ``badnets`` (the field's baseline); ``inverted-digit`` is
the quick suite's toy; ``clean-pair`` is no attack (Fig. 4's non-adversarial data).  Shared pieces: :mod:`attacks.triggers` (trigger math) and
:mod:`attacks.patterns` (poison counting and selection, dataset assembly).  The contract
(``Attack``, ``AttackedData``, ``RunContext``) lives in :mod:`benchmark.api`.
"""
from attacks import (  # noqa: F401  (imported for registration)
    badnets,
    cifar_mnist_joint,
    clean_pair,
    composite,
    input_aware,
    inverted_digit,
    semantic,
    spectral_pixel,
    speech_noise_burst,
    text_delete,
    text_duplicate,
    text_insert,
    text_semantic,
    text_syntactic,
    weber_backdoor,
)
