"""Datasets (raw) and featurizers."""
from benchmark.data.types import DatasetError, RawDataset, Split, resolve_cache_dir, resolve_data_root

__all__ = ["DatasetError", "RawDataset", "Split", "resolve_cache_dir", "resolve_data_root"]
