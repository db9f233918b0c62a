"""Decode-once tensor cache for loaders whose raw files are slow to decode (CIFAR-10 JPEGs).

A cache entry is one ``.pt`` file holding a dict of tensors (and plain lists/strings) plus the
key it was built for.  The key always contains a fingerprint of the source files (relative
paths, sizes and modification times), so a different source or a changed file never reuses a
stale entry.  Entries are written atomically (temporary file + ``os.replace``) and read back
with ``torch.load(weights_only=True)``; an unreadable or mismatching entry is rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from benchmark.config import stable_hash

#: Bump when the layout of cached payloads changes (ours).
CACHE_FORMAT = 1


def fingerprint_files(root: Path, files: Iterable[Path]) -> str:
    """SHA-256 over (path relative to ``root``, size, mtime_ns) of every file, in sorted order."""
    h = hashlib.sha256()
    rows = []
    for f in files:
        st = os.stat(f)
        rows.append((Path(f).relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    for rel, size, mtime in sorted(rows):
        h.update(f"{rel}\x1f{size}\x1f{mtime}\x1e".encode())
    return h.hexdigest()


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CacheResult:
    payload: dict[str, Any]
    status: str  # "hit" | "miss" | "disabled"
    path: Path | None


def cache_file(cache_dir: Path, namespace: str, key: Mapping[str, Any]) -> Path:
    return Path(cache_dir) / namespace / f"{stable_hash({'format': CACHE_FORMAT, **key}, 24)}.pt"


def load_or_build(cache_dir: Path | None, namespace: str, key: Mapping[str, Any],
                  build: Callable[[], dict[str, Any]]) -> CacheResult:
    """Return the cached payload for ``key`` or build, store and return it.

    ``cache_dir=None`` disables caching.  A cache directory that cannot be written only warns:
    the freshly built payload is returned either way.
    """
    if cache_dir is None:
        return CacheResult(build(), "disabled", None)
    path = cache_file(cache_dir, namespace, key)
    full_key = {"format": CACHE_FORMAT, **key}
    if path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(stored, dict) and stored.get("key") == stable_hash(full_key, 64):
                return CacheResult(stored["payload"], "hit", path)
        except Exception as exc:  # unreadable entry: rebuild it
            warnings.warn(f"ignoring unreadable cache file {path}: {exc}", stacklevel=2)
    payload = build()
    try:
        _atomic_save({"key": stable_hash(full_key, 64), "payload": payload}, path)
    except OSError as exc:
        warnings.warn(f"could not write cache file {path} ({exc}); continuing without cache. "
                      f"Pass a writable --cache-dir to avoid decoding again.", stacklevel=2)
        return CacheResult(payload, "miss", None)
    return CacheResult(payload, "miss", path)


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache is not secret
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
