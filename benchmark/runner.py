"""Run a suite: trials x methods, with progress bars, resumable at (trial, method) granularity."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from benchmark.config import build, to_jsonable
from benchmark.experiment import Experiment, MethodSpec, Suite, TrialConfig
from benchmark.metrics import HIGHER_IS_BETTER, higher_is_better
from benchmark.protocols import get_protocol
from benchmark.protocols.common import build_method, oracle_needs
from benchmark.provenance import device_info, git_info, package_versions
from benchmark.registry import suites
from benchmark.rng import numpy_rng
from benchmark.store import MetricValue, Record, RecordStore, score_hash
from benchmark.trial import prepare_trial


@dataclass
class RunOptions:
    scale: str = "small"
    data_root: Path = Path("data")
    cache_dir: Path = Path(".cache/benchmark")
    output_dir: Path = Path("runs")
    download: bool = False
    experiments: tuple[str, ...] = ()  # empty: all
    methods: tuple[str, ...] = ()  # empty: all
    trials: int | None = None  # override the number of trials
    extra_methods: tuple[MethodSpec, ...] = ()  # e.g. a plugin defense added from the command line
    progress: bool = True


@dataclass
class RunSummary:
    written: int = 0
    skipped: int = 0
    not_evaluated: int = 0
    wall_time_s: float = 0.0


def get_suite(name: str) -> Suite:
    obj = suites.get(name)
    return obj() if callable(obj) and not isinstance(obj, Suite) else obj


def _metric_values(metrics: dict[str, float]) -> dict[str, MetricValue]:
    return {k: MetricValue(v, higher_is_better(k)) for k, v in metrics.items()}


def _trial_metric_values(metrics: dict[str, float]) -> dict[str, MetricValue]:
    return {k: MetricValue(v, HIGHER_IS_BETTER.get(k, True)) for k, v in metrics.items()}


def experiment_methods(exp: Experiment, opts: RunOptions) -> list[MethodSpec]:
    """The experiment's methods plus command-line ones its protocol accepts, filtered by
    ``--method``."""
    protocol = get_protocol(exp.resolve(opts.scale, 0, 0).values.get("protocol", {}).get("name", "adversarial-set"))
    extra = [m for m in opts.extra_methods if m.kind in protocol.METHOD_KINDS]
    labels = [m.label for m in exp.methods]
    clash = [m.label for m in extra if m.label in labels]
    if clash:
        raise ValueError(f"experiment {exp.name!r} already has method(s) labelled {clash}")
    methods = list(exp.methods) + extra
    if opts.methods:
        methods = [m for m in methods if m.label in opts.methods or m.name in opts.methods]
    return methods


def run_suite(suite: Suite, opts: RunOptions, log: Callable[[str], None] = print) -> RunSummary:
    store = RecordStore(opts.output_dir)
    summary = RunSummary()
    t_start = time.perf_counter()
    experiments = [e for e in suite.experiments if not opts.experiments or e.name in opts.experiments]
    missing = set(opts.experiments) - {e.name for e in suite.experiments}
    if missing:
        raise ValueError(f"suite {suite.name!r} has no experiment(s) {sorted(missing)}; "
                         f"it has {[e.name for e in suite.experiments]}")
    for exp in experiments:
        methods = experiment_methods(exp, opts)
        n_trials = opts.trials if opts.trials is not None else exp.num_trials(opts.scale)
        bar = tqdm(range(n_trials), desc=f"{suite.name}/{exp.name} [{opts.scale}]", unit="trial",
                   disable=not opts.progress, leave=False)
        for trial in bar:
            tc = exp.resolve(opts.scale, trial, suite.seed)
            todo = [m for m in methods
                    if not store.exists(suite.name, exp.name, trial, tc.hash, m.label)]
            summary.skipped += len(methods) - len(todo)
            if not todo:
                continue
            summary.written += _run_trial(suite, exp, tc, todo, opts, store, summary)
    summary.wall_time_s = time.perf_counter() - t_start
    return summary


def _run_trial(suite: Suite, exp: Experiment, tc: TrialConfig, todo, opts: RunOptions,
               store: RecordStore, summary: RunSummary) -> int:
    values = tc.values
    pspec = values.get("protocol", {"name": "adversarial-set"})
    protocol = get_protocol(pspec["name"])
    pparams = build(protocol.Params, pspec.get("params", {}), what=f"protocol {pspec['name']}")
    prepared = prepare_trial(tc, opts.data_root, opts.cache_dir, opts.download)
    state = protocol.setup(prepared, pparams, numpy_rng(tc.seed, "protocol"))
    written = 0
    common = dict(
        suite=suite.name, suite_version=suite.version, experiment=exp.name, scale=tc.scale,
        trial=tc.trial, seed=tc.seed, config=to_jsonable(dict(tc.config)), config_hash=tc.hash,
        protocol=pspec["name"], trial_metrics=_trial_metric_values(prepared.trial_metrics),
        data_source=prepared.data_source,
        provenance={"git": git_info(), "packages": package_versions(), "device": device_info()},
    )
    for spec in todo:
        method = build_method(spec)
        t0 = time.perf_counter()
        if state is None:
            rec = Record(**common, method=spec.label, method_kind=spec.kind, method_name=spec.name,
                         method_params=to_jsonable(dict(spec.params)),
                         granted=[], oracle=[], metrics={}, score_hash=None, wall_time_s=0.0,
                         status="not-evaluated",
                         message=getattr(protocol, "NOTHING_TO_EVALUATE",
                                         "no target was flipped by the attack in this trial"))
            summary.not_evaluated += 1
        else:
            result = protocol.evaluate(prepared, state, method, numpy_rng(tc.seed, "method", spec.label))
            rec = Record(**common, method=spec.label, method_kind=spec.kind, method_name=spec.name,
                         method_params=to_jsonable(dict(spec.params)),
                         granted=result.granted, oracle=oracle_needs(frozenset(result.granted)),
                         metrics=_metric_values(result.metrics),
                         score_hash=score_hash(result.scores) if result.scores is not None else None,
                         wall_time_s=time.perf_counter() - t0, extra=to_jsonable(result.extra))
        store.write(rec)
        written += 1
    return written
