"""Registers every in-tree dataset loader (imported lazily by the ``datasets`` registry).

A loader is called as ``loader(data_root=Path, cache_dir=Path, download=bool, **params)`` and
returns a :class:`benchmark.data.types.RawDataset`.
"""
from benchmark.data import ag_news, cifar10, digits, espeak_digits, fsdd, mnist, sst2  # noqa: F401
