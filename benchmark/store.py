"""Result store: one self-describing JSON record per (trial, method).

Layout: ``<root>/<suite>/<experiment>/trial-<index>-<config_hash>-<data_fingerprint>/<label>-<method_hash>.json``.
A record's identity is everything that determines its numbers: the trial config (hash, with its
seed), the content of the dataset it ran on (fingerprint), the method's label and the hash of its
kind, registered name and parameters -- so a changed parameter, another data root or another
copy of the data never reuses an old record.  Writes are atomic (temporary file + rename), so a
run killed at any point leaves only complete records; started again, it skips every record whose
file exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from benchmark.config import to_jsonable

RECORD_SCHEMA = 2  # 2: records keyed by method hash and data fingerprint
OUTPUT_DIR_ENV = "BENCHMARK_OUTPUT_DIR"


@dataclass
class MetricValue:
    value: float | None
    higher_is_better: bool


@dataclass
class Record:
    """Everything needed to interpret (and re-create) one number."""

    suite: str
    suite_version: int
    experiment: str
    scale: str
    trial: int
    seed: int
    config: dict[str, Any]  # resolved config, constants with their sources
    config_hash: str
    data_fingerprint: str  # content hash of the raw dataset (benchmark.data.types.RawDataset.fingerprint)
    protocol: str
    method: str  # the label shown in tables
    method_kind: str  # registry kind: defenses / target_rankers / ...
    method_name: str  # registered name
    method_params: dict[str, Any]
    method_hash: str  # hash of kind, registered name and parameters (benchmark.methods.method_hash)
    granted: list[str]  # what the method was given (Evidence)
    oracle: list[str]  # oracle knowledge among ``granted``
    metrics: dict[str, MetricValue]
    trial_metrics: dict[str, MetricValue]  # attack-level facts (ASR, clean accuracy, ...)
    score_hash: str | None
    wall_time_s: float
    status: str = "ok"  # "ok" | "not-evaluated" (the protocol found nothing to evaluate)
    message: str = ""
    data_source: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = RECORD_SCHEMA

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Record":
        obj = dict(obj)
        for key in ("metrics", "trial_metrics"):
            obj[key] = {k: MetricValue(**v) for k, v in obj.get(key, {}).items()}
        return cls(**obj)

    def metric(self, name: str) -> float | None:
        m = self.metrics.get(name) or self.trial_metrics.get(name)
        if m is None or m.value is None or isinstance(m.value, str):
            return None
        return float(m.value)


def score_hash(scores: np.ndarray) -> str:
    """Hash of a score vector rounded to 6 significant digits (lets CI diff scores cheaply)."""
    arr = np.asarray(scores, dtype=np.float64)
    rounded = np.array([float(f"{x:.6g}") for x in arr.ravel()])
    return hashlib.sha256(rounded.tobytes() + str(arr.shape).encode()).hexdigest()[:16]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "_"


def resolve_output_dir(output_dir: str | os.PathLike | None = None) -> Path:
    """``--output-dir``, else ``$BENCHMARK_OUTPUT_DIR``, else ``./runs``."""
    if output_dir:
        return Path(output_dir)
    return Path(os.environ.get(OUTPUT_DIR_ENV, "runs"))


class RecordStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def trial_dir(self, suite: str, experiment: str, trial: int, config_hash: str, data_fingerprint: str) -> Path:
        return self.root / slug(suite) / slug(experiment) / f"trial-{trial:03d}-{config_hash}-{data_fingerprint}"

    def path(self, suite: str, experiment: str, trial: int, config_hash: str, data_fingerprint: str,
             method: str, method_hash: str) -> Path:
        return self.trial_dir(suite, experiment, trial, config_hash, data_fingerprint) / f"{slug(method)}-{method_hash}.json"

    def exists(self, suite: str, experiment: str, trial: int, config_hash: str, data_fingerprint: str,
               method: str, method_hash: str) -> bool:
        return self.path(suite, experiment, trial, config_hash, data_fingerprint, method, method_hash).is_file()

    def write(self, record: Record) -> Path:
        path = self.path(record.suite, record.experiment, record.trial, record.config_hash,
                         record.data_fingerprint, record.method, record.method_hash)
        atomic_write_text(path, json.dumps(record.to_json(), indent=1, sort_keys=True))
        return path

    def records(self, suite: str | None = None) -> Iterator[Record]:
        base = self.root / slug(suite) if suite else self.root
        for path in sorted(base.rglob("*.json")):
            try:
                obj = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"corrupt result record {path}: {exc}; delete it and re-run") from None
            if obj.get("schema") == RECORD_SCHEMA:
                yield Record.from_json(obj)


#: data-source fields that name paths of the machine a run was on (left out of exports)
MACHINE_PATH_KEYS = frozenset({"dir", "root", "cache_file", "path", "data_root"})


def export_records(records: Iterable[Record], path: Path) -> int:
    """Write ``records`` compactly to a JSON-lines file (one record per line, sorted): everything
    but the resolved config (its hash stays), the provenance beyond the git commit and the data
    source's machine paths (:data:`MACHINE_PATH_KEYS`; its content fingerprints stay), so that
    committed results can be re-rendered (:func:`load_export`) without the run's output dir."""
    rows = []
    for r in records:
        obj = r.to_json()
        obj["config"] = {}
        obj["provenance"] = {"git": obj.get("provenance", {}).get("git", {})}
        # machine paths (data root, cache files) stay out: the content fingerprints identify the data
        obj["data_source"] = {k: v for k, v in obj.get("data_source", {}).items() if k not in MACHINE_PATH_KEYS}
        rows.append(obj)
    rows.sort(key=lambda o: (o["experiment"], o["scale"], o["trial"], o["method"]))
    atomic_write_text(Path(path), "".join(json.dumps(o, sort_keys=True) + "\n" for o in rows))
    return len(rows)


def load_export(path: Path) -> list[Record]:
    """The records of an :func:`export_records` file."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(Record.from_json(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                raise ValueError(f"{path} line {i}: not an exported record ({exc})") from None
    return out


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
