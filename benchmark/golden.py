"""Golden results: a committed ``smoke``-scale run and the tolerances ``python -m benchmark check``
holds a rerun to.

A golden file holds, per (experiment, method, metric), the value the suite's seed produced
(``expected``) and a tolerance derived from the *seed-to-seed spread* of that value: the same
smoke run repeated under other suite seeds (``benchmark.tools.make_golden``), tolerance =
``K_SPREAD`` x the sample standard deviation over those seeds, at least ``FLOOR_ABS`` +
``FLOOR_REL`` x |expected| (floating-point noise of a rerun on another machine, for values that
did not move across seeds).  A rerun differing by more than its seed spread is not noise: it is a
changed method, attack, trainer or metric.

Another CPU (or BLAS build) rounds differently, and a smoke model trained for an epoch or two can
land elsewhere from a rounding-level change: the golden build therefore also reruns the suite's
own seed with torch on other thread counts (:data:`ROUNDING_THREADS`: the same computation in
another float summation order, a stand-in for another machine), and each tolerance is at least
``K_SPREAD`` x the largest move of those reruns from the expected value -- and of the expected
values of earlier golden files of the same suite version and seed built on other machines, where
the build is given them (``make_golden --replica-golden-rev``: measured cross-machine moves).  (Added after the golden
file built on one machine failed 4 of 282 values on another, an AMD EPYC, with the code unchanged.)
The file records the machine and library versions it was built with.

Attack-level facts of each experiment (clean accuracy, ASR without defense) are checked under the
method name :data:`ATTACK`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from benchmark.experiment import Suite
from benchmark.runner import RunOptions, current_records, get_suite, run_suite
from benchmark.store import Record

GOLDEN_SCHEMA = 1
ATTACK = "(attack)"
#: tolerance = K_SPREAD x seed-to-seed standard deviation (ours: ~3 sigma of the seed noise)
K_SPREAD = 3.0
#: tolerance floor for values that do not move across seeds (ours: float32 rerun noise)
FLOOR_ABS, FLOOR_REL = 1e-6, 1e-4
#: torch threads of golden builds and checks: the thread count changes floating-point summation
#: order and so the trained models (a smoke model trained for one epoch can differ a lot), so
#: both run single-threaded on every machine
GOLDEN_THREADS = 1
#: thread counts of the rounding reruns of the suite seed (ours: two other summation orders)
ROUNDING_THREADS = (2, 3)
#: attack-level facts checked per experiment
TRIAL_METRICS = ("clean_accuracy", "asr_no_defense")

Key = tuple[str, str, str]  # (experiment, method, metric)


def collect(records: Iterable[Record]) -> dict[Key, float]:
    """Mean over trials of every finite-or-NaN metric of every ``ok`` record, plus the attack-level
    facts per experiment (under :data:`ATTACK`)."""
    acc: dict[Key, list[float]] = {}
    seen_trials: set[tuple[str, int]] = set()
    for r in records:
        if (r.experiment, r.trial) not in seen_trials:
            seen_trials.add((r.experiment, r.trial))
            for m in TRIAL_METRICS:
                v = r.trial_metrics.get(m)
                if v is not None and v.value is not None:
                    acc.setdefault((r.experiment, ATTACK, m), []).append(float(v.value))
        if r.status != "ok":
            continue
        for name, mv in r.metrics.items():
            if mv.value is not None:
                acc.setdefault((r.experiment, r.method, name), []).append(float(mv.value))
    return {k: float(np.mean(v)) for k, v in acc.items()}


@dataclass(frozen=True)
class GoldenValue:
    experiment: str
    method: str
    metric: str
    expected: float
    tolerance: float
    spread_sd: float
    n_seeds: int


def tolerance(expected: float, spread: list[float], rounding: Iterable[float] = ()) -> tuple[float, float]:
    """(tolerance, sample sd over seeds) of a value (module docstring); ``rounding``: the value
    in the rounding reruns of the expected seed."""
    finite = [v for v in spread if math.isfinite(v)]
    sd = float(np.std(finite, ddof=1)) if len(finite) >= 2 else 0.0
    floor = FLOOR_ABS + FLOOR_REL * (abs(expected) if math.isfinite(expected) else 0.0)
    moves = [abs(v - expected) for v in rounding if math.isfinite(v) and math.isfinite(expected)]
    return max(K_SPREAD * sd, K_SPREAD * max(moves, default=0.0), floor), sd


def build_golden(main: Mapping[Key, float], by_seed: Mapping[int, Mapping[Key, float]], *, suite: str,
                 suite_version: int, scale: str, seed: int, command: str,
                 rounding: Mapping[int | str, Mapping[Key, float]] | None = None) -> dict:
    """The golden file's content: ``main`` (the suite seed's values) with tolerances from the values
    under every seed of ``by_seed`` (which should include ``seed``) and, where given, from the
    rounding reruns of ``seed`` (``{label: values}``: a thread count, or an earlier golden file of
    the same seed built on another machine, :func:`golden_values`)."""
    rounding = {str(k): v for k, v in (rounding or {}).items()}
    values = []
    for key in sorted(main):
        spread = [vals[key] for vals in by_seed.values() if key in vals]
        tol, sd = tolerance(main[key], spread, [vals[key] for vals in rounding.values() if key in vals])
        values.append(GoldenValue(*key, expected=main[key], tolerance=tol, spread_sd=sd, n_seeds=len(spread)))
    return {
        "schema": GOLDEN_SCHEMA, "suite": suite, "suite_version": suite_version, "scale": scale, "seed": seed,
        "command": command, "seeds": sorted(by_seed), "k_spread": K_SPREAD,
        "rounding_reruns": sorted(rounding), "built_with": build_environment(),
        "floor": {"abs": FLOOR_ABS, "rel": FLOOR_REL},
        "values": [v.__dict__ for v in values],
    }


def golden_values(golden: Mapping) -> dict[Key, float]:
    """A golden file's expected values by (experiment, method, metric)."""
    return {(v["experiment"], v["method"], v["metric"]): float(v["expected"]) for v in golden["values"]}


def build_environment() -> dict[str, str]:
    """The machine and library versions a golden file was built with (provenance only)."""
    import platform

    import numpy
    import sklearn

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__}


def load_golden(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"golden file {path} not found; build it with "
                                f"`python -m benchmark.tools.make_golden` (README, 'Golden results')")
    data = json.loads(path.read_text())
    if data.get("schema") != GOLDEN_SCHEMA:
        raise ValueError(f"golden file {path} has schema {data.get('schema')!r}; this version reads "
                         f"{GOLDEN_SCHEMA}: rebuild it with `python -m benchmark.tools.make_golden`")
    return data


@dataclass(frozen=True)
class Failure:
    experiment: str
    method: str
    metric: str
    expected: float
    got: float | None  # None: the rerun did not produce this value
    tolerance: float
    entry: str = ""  # the suite entries (tables / figures) the experiment belongs to

    def describe(self) -> str:
        got = "missing" if self.got is None else f"{self.got:.6g}"
        diff = "" if self.got is None else f", |diff| {abs(self.got - self.expected):.3g}"
        where = f"[{self.entry}] " if self.entry else ""
        return (f"{where}{self.experiment} / {self.method} / {self.metric}: expected {self.expected:.6g}, "
                f"got {got}, tolerance {self.tolerance:.3g}{diff}")


def compare(golden: Mapping, got: Mapping[Key, float],
            entry_of: Callable[[str], str] = lambda experiment: "") -> list[Failure]:
    """Every golden value the rerun misses or moves by more than its tolerance (NaN matches NaN);
    ``entry_of(experiment)`` names the entries for the message."""
    failures = []
    for v in golden["values"]:
        key = (v["experiment"], v["method"], v["metric"])
        exp, tol = float(v["expected"]), float(v["tolerance"])
        g = got.get(key)
        bad = (g is None or (math.isnan(exp) != math.isnan(g))
               or (not math.isnan(exp) and abs(g - exp) > tol))
        if bad:
            failures.append(Failure(*key, exp, g, tol, entry_of(key[0])))
    return failures


def moved(golden: Mapping, got: Mapping[Key, float]) -> list[Failure]:
    """Values within tolerance that still moved by more than the float floor: not failures (the
    tolerance is the seed-to-seed spread) but worth a look after a change that should not move
    any number."""
    out = []
    for v in golden["values"]:
        key = (v["experiment"], v["method"], v["metric"])
        exp, g = float(v["expected"]), got.get(key)
        if g is None or math.isnan(exp) or math.isnan(g):
            continue
        floor = FLOOR_ABS + FLOOR_REL * abs(exp)
        if floor < abs(g - exp) <= float(v["tolerance"]):
            out.append(Failure(*key, exp, g, float(v["tolerance"])))
    return out


def run_and_collect(suite_name: str, scale: str, seed: int, data_root: Path, cache_dir: Path,
                    output_dir: Path, progress: bool = False,
                    threads: int = GOLDEN_THREADS) -> tuple[dict[Key, float], Suite]:
    """Run suite ``suite_name`` at ``scale`` under suite seed ``seed`` (resuming what
    ``output_dir`` holds) and collect its current records' values, with torch on ``threads``
    thread(s) (default :data:`GOLDEN_THREADS`) whatever the machine has, as the golden file was
    built (other counts: its rounding reruns)."""
    suite = dataclasses.replace(get_suite(suite_name), seed=seed)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the thread count changes float summation order, hence training
    try:
        return _run_and_collect(suite, scale, data_root, cache_dir, output_dir, progress)
    finally:
        torch.set_num_threads(before)


def _run_and_collect(suite: Suite, scale: str, data_root: Path, cache_dir: Path, output_dir: Path,
                     progress: bool) -> tuple[dict[Key, float], Suite]:
    opts = RunOptions(scale=scale, data_root=Path(data_root), cache_dir=Path(cache_dir),
                      output_dir=Path(output_dir), progress=progress)
    run_suite(suite, opts, log=lambda _msg: None)
    records, _stale = current_records(suite, Path(output_dir), scale)
    return collect(records), suite


def entry_names(suite: Suite) -> Callable[[str], str]:
    """experiment -> the ids of the suite entries it belongs to, comma-separated."""
    return lambda experiment: ", ".join(e.id for e in suite.entries_of(experiment))
