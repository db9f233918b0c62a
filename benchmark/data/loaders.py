"""Registers every in-tree dataset loader (imported lazily by the ``datasets`` registry).

A loader is called as ``loader(data_root=Path, cache_dir=Path, download=bool, **params)`` and
returns a :class:`benchmark.data.types.RawDataset`.
"""
from benchmark.data import digits  # noqa: F401

try:  # real-data loaders (cifar10, mnist, fsdd, sst2)
    from benchmark.data import cifar10, fsdd, mnist, sst2  # noqa: F401
except ImportError:  # pragma: no cover - only while a module is absent
    pass
