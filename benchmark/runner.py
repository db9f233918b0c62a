"""Run a suite: trials x methods, with progress bars, resumable at (trial, method) granularity.

:func:`plan_suite` resolves and validates everything a run needs -- every experiment's trial
configs, their components (dataset, attack, featurizer, model, training, protocol) and every
method with its parameters -- before any work starts; ``--dry-run`` calls the same function, so
a configuration that passes a dry run cannot fail validation later.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from benchmark.api import Protocol
from benchmark.config import ConfigError, build, check_call_params, to_jsonable
from benchmark.data.featurizers import build_featurizer
from benchmark.experiment import Experiment, MethodSpec, Suite, TrialConfig
from benchmark.api.evidence import TRIAL_METHODS
from benchmark.methods import build_method, method_hash, oracle_needs
from benchmark.metrics import HIGHER_IS_BETTER, higher_is_better
from benchmark.models import check_model_params
from benchmark.provenance import device_info, git_info, package_versions
from benchmark.registry import attacks, datasets, protocols, suites
from benchmark.rng import numpy_rng
from benchmark.store import MetricValue, Record, RecordStore, score_hash
from benchmark.suggest import did_you_mean
from benchmark.training import TrainConfig
from benchmark.trial import dataset_fingerprint, prepare_trial

DEFAULT_PROTOCOL = "adversarial-set"


@dataclass
class RunOptions:
    scale: str = "small"
    data_root: Path = Path("data")
    cache_dir: Path = Path(".cache/benchmark")
    output_dir: Path = Path("runs")
    download: bool = False
    experiments: tuple[str, ...] = ()  # empty: all
    entries: tuple[str, ...] = ()  # ``--only``: the experiments of these suite entries
    methods: tuple[str, ...] = ()  # empty: all
    trials: int | None = None  # override the number of trials
    extra_methods: tuple[MethodSpec, ...] = ()  # e.g. a plugin defense added from the command line
    progress: bool = True
    device: str = "cpu"


@dataclass
class RunSummary:
    written: int = 0
    skipped: int = 0
    not_evaluated: int = 0
    wall_time_s: float = 0.0


@dataclass
class PlannedMethod:
    spec: MethodSpec
    method: Any
    hash: str


@dataclass
class Skipped:
    experiment: str
    why: str


@dataclass
class ExperimentPlan:
    experiment: Experiment
    protocol_name: str
    protocol: Protocol
    methods: list[PlannedMethod]
    trials: list[TrialConfig] = field(default_factory=list)


def get_suite(name: str) -> Suite:
    obj = suites.get(name)
    return obj() if callable(obj) and not isinstance(obj, Suite) else obj


def _metric_values(metrics: dict[str, float]) -> dict[str, MetricValue]:
    return {k: MetricValue(v, higher_is_better(k)) for k, v in metrics.items()}


def _trial_metric_values(metrics: dict[str, float]) -> dict[str, MetricValue]:
    return {k: MetricValue(v, HIGHER_IS_BETTER.get(k, True)) for k, v in metrics.items()}


def _protocol_of(tc: TrialConfig) -> tuple[str, Protocol]:
    spec = tc.values.get("protocol", {"name": DEFAULT_PROTOCOL})
    name = spec["name"]
    return name, protocols.get(name)(**dict(spec.get("params") or {}))


def validate_trial_config(tc: TrialConfig) -> None:
    """Construct (or signature-check) every component of a trial config; an unknown name or a
    bad parameter is a ConfigError / RegistryError here, before any data is loaded."""
    v = tc.values
    where = f"experiment {tc.experiment!r} at scale {tc.scale!r}"
    for key in ("dataset", "attack", "model", "train"):
        if key not in v:
            raise ConfigError(f"{where}: config has no {key!r} section")
    ds = v["dataset"]
    check_call_params(datasets.get(ds["name"]), ds.get("params", {}), ("data_root", "cache_dir", "download"),
                      f"dataset {ds['name']!r} ({where})")
    attacks.get(v["attack"]["name"])(**v["attack"].get("params", {}))
    if v.get("featurizer") is not None:
        build_featurizer(v["featurizer"]["name"], v["featurizer"].get("params", {}))
    check_model_params(v["model"]["name"], v["model"].get("params", {}))
    build(TrainConfig, v["train"], what=f"train ({where})")
    _protocol_of(tc)


def experiment_methods(exp: Experiment, protocol: Protocol, opts: RunOptions) -> list[tuple[MethodSpec, Any]]:
    """The experiment's methods, filtered by ``--method``, plus the command-line ones its protocol
    evaluates (always: they were asked for by name), each with its built instance (``None`` for
    the experiment's own, built by the caller).  Two methods with one label are an error; a
    command-line method with a bad parameter is an error (raised by :func:`build_method`), not a
    method no protocol takes."""
    extra: list[tuple[MethodSpec, Any]] = []
    for spec in opts.extra_methods:
        method = build_method(spec)
        if spec.kind in protocol.method_kinds:
            try:
                protocol.check_method(method)
            except ConfigError:
                continue  # e.g. a defense that this protocol cannot evaluate
            extra.append((spec, method))
    labels = [m.label for m in exp.methods] + [spec.label for spec, _ in extra]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"experiment {exp.name!r}: two methods are labelled {dup}; give the command-line "
                          f"one its own label: --defense 'LABEL:NAME=JSON'")
    own = list(exp.methods)
    if opts.methods:  # selects among the experiment's methods; command-line methods always run
        own = [m for m in own if m.label in opts.methods or m.name in opts.methods]
    return [(m, None) for m in own] + extra


def selected_experiments(suite: Suite, opts: RunOptions) -> list[Experiment]:
    """The experiments ``--experiment`` and ``--only`` select (both empty: all), in suite order."""
    names = [e.name for e in suite.experiments]
    for e in opts.experiments:
        if e not in names:
            raise ConfigError(f"suite {suite.name!r} has no experiment {e!r}{did_you_mean(e, names)} "
                              f"It has: {', '.join(names)}")
    if opts.entries and not suite.entries:
        raise ConfigError(f"--only selects entries, but suite {suite.name!r} has none; use --experiment")
    wanted = set(opts.experiments)
    for entry_id in opts.entries:
        entry = suite.entry(entry_id)
        if not entry.experiments:
            raise ConfigError(f"entry {entry_id!r} has nothing to run: {entry.missing.describe()}")
        wanted |= set(entry.experiments)
    return [e for e in suite.experiments if not wanted or e.name in wanted]


def skipped_experiments(suite: Suite, opts: RunOptions) -> list[Skipped]:
    """Selected experiments not run at this scale, with the reason (shown, never substituted)."""
    return [Skipped(e.name, e.not_run[opts.scale].describe())
            for e in selected_experiments(suite, opts) if opts.scale in e.not_run]


def plan_suite(suite: Suite, opts: RunOptions) -> list[ExperimentPlan]:
    """Resolve and validate every trial config and method of the run (no data is loaded).
    Experiments marked not run at the scale are left out (:func:`skipped_experiments`)."""
    if opts.trials is not None and opts.trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {opts.trials}")
    plans: list[ExperimentPlan] = []
    for exp in selected_experiments(suite, opts):
        if opts.scale in exp.not_run:
            continue
        tc0 = exp.resolve(opts.scale, 0, suite.seed)
        validate_trial_config(tc0)
        pname, protocol = _protocol_of(tc0)
        planned = []
        for spec, method in experiment_methods(exp, protocol, opts):
            if method is None:
                if spec.kind not in protocol.method_kinds:
                    raise ConfigError(f"experiment {exp.name!r}: protocol {pname!r} evaluates "
                                      f"{list(protocol.method_kinds)}, not {spec.kind} ({spec.label!r})")
                method = build_method(spec)
                protocol.check_method(method)
            planned.append(PlannedMethod(spec, method, method_hash(spec)))
        n = opts.trials if opts.trials is not None else exp.num_trials(opts.scale)
        if n < 1:
            raise ConfigError(f"experiment {exp.name!r} resolves to {n} trials at scale {opts.scale!r}")
        plans.append(ExperimentPlan(exp, pname, protocol, planned,
                                    [exp.resolve(opts.scale, t, suite.seed) for t in range(n)]))
    _check_selection(plans, opts)
    return plans


def _check_selection(plans: list[ExperimentPlan], opts: RunOptions) -> None:
    """``--method`` and command-line methods that select nothing are errors, not silent no-ops."""
    chosen = {m.spec.label for p in plans for m in p.methods} | {m.spec.name for p in plans for m in p.methods}
    for sel in opts.methods:
        if sel not in chosen:
            known = sorted({m.label for p in plans for m in p.experiment.methods})
            raise ConfigError(f"--method {sel!r} matches no method of the selected experiments"
                              f"{did_you_mean(sel, known)} Known labels: {', '.join(known)}")
    for spec in opts.extra_methods:
        if not any(m.spec is spec for p in plans for m in p.methods):
            kinds = sorted({k for p in plans for k in p.protocol.method_kinds})
            raise ConfigError(f"{spec.kind} {spec.name!r} (label {spec.label!r}) is evaluated by no selected "
                              f"experiment: their protocols evaluate {kinds}, and none accepts this method")
    if not plans:
        raise ConfigError(f"the selection leaves no experiment to run at scale {opts.scale!r} (each selected "
                          f"experiment is marked not run there: `python -m benchmark list` says why)")
    if not any(p.methods for p in plans):
        raise ConfigError("the selection leaves no method to run")


@dataclass
class ProbeResult:
    experiment: str
    n_train: int
    steps: int
    methods: dict[str, str]  # label -> "ok (x s)" or what was found
    wall_time_s: float


def probe_suite(suite: Suite, opts: RunOptions, steps: int = 2,
                log: Callable[[str], None] = print) -> list[ProbeResult]:
    """``run --dry-run --probe``: for every planned experiment, build trial 0 of the config at the
    scale (data, attack, featurizer, the model at its size), train ``steps`` steps on a cut of the
    training set (:func:`benchmark.trial.prepare_trial` with ``probe_steps``) and run every method
    once through the experiment's protocol on it, with the first targets standing in for
    successful ones (after a few steps none is).  A config that passes has been built end to end
    at its real sizes; the numbers mean nothing and are not recorded."""
    if steps < 1:
        raise ConfigError(f"--probe-steps must be >= 1, got {steps}")
    plans = plan_suite(suite, opts)
    ensure_writable_dir(opts.cache_dir, "cache dir (--cache-dir)")
    out = []
    for plan in plans:
        t0 = time.perf_counter()
        tc = plan.trials[0]
        p = prepare_trial(tc, opts.data_root, opts.cache_dir, opts.download, device=opts.device, probe_steps=steps)
        p.successful_targets = np.arange(min(3, len(p.attacked.y_adv)))  # stand-ins: no target succeeds yet
        p.memo[TRIAL_METHODS] = tuple(pm.method for pm in plan.methods)
        rng = numpy_rng(tc.seed, "probe")
        protocol = plan.protocol.for_probe()
        state = protocol.setup(p, rng)
        if state is None:
            raise ConfigError(f"probe of experiment {plan.experiment.name!r}: its protocol {plan.protocol_name!r} "
                              f"found nothing to evaluate on the probe trial")
        done = {}
        for pm in plan.methods:
            t1 = time.perf_counter()
            try:
                protocol.evaluate(p, state, pm.method, numpy_rng(tc.seed, "probe", pm.spec.label))
            except Exception as exc:
                raise ConfigError(f"probe of experiment {plan.experiment.name!r}, method {pm.spec.label!r} "
                                  f"({pm.spec.name}) at scale {opts.scale!r} failed: {type(exc).__name__}: {exc}") from exc
            done[pm.spec.label] = f"ok ({time.perf_counter() - t1:.1f} s)"
        res = ProbeResult(plan.experiment.name, len(p.train.labels), steps, done, time.perf_counter() - t0)
        log(f"probe {res.experiment}: {res.n_train} training examples, {steps} step(s), "
            f"{len(done)} method(s) ok ({res.wall_time_s:.0f} s)")
        out.append(res)
    return out


def ensure_writable_dir(path: Path, what: str) -> None:
    """Create ``path`` if needed and check that files can be written there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a directory; pass another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"{what} {path} is not writable ({exc.strerror or exc}); pass another path") from None


def run_suite(suite: Suite, opts: RunOptions, log: Callable[[str], None] = print) -> RunSummary:
    plans = plan_suite(suite, opts)
    ensure_writable_dir(opts.output_dir, "output dir (--output-dir)")
    ensure_writable_dir(opts.cache_dir, "cache dir (--cache-dir)")
    store = RecordStore(opts.output_dir)
    summary = RunSummary()
    t_start = time.perf_counter()
    for plan in plans:
        exp = plan.experiment
        fp = dataset_fingerprint(plan.trials[0].values["dataset"], opts.data_root, opts.cache_dir, opts.download)
        bar = tqdm(plan.trials, desc=f"{suite.name}/{exp.name} [{opts.scale}]", unit="trial",
                   disable=not opts.progress, leave=False)
        for tc in bar:
            todo = [m for m in plan.methods
                    if not store.exists(suite.name, exp.name, tc.trial, tc.hash, fp, m.spec.label, m.hash)]
            summary.skipped += len(plan.methods) - len(todo)
            if todo:
                summary.written += _run_trial(suite, plan, tc, todo, opts, store, summary)
    summary.wall_time_s = time.perf_counter() - t_start
    return summary


def _run_trial(suite: Suite, plan: ExperimentPlan, tc: TrialConfig, todo: list[PlannedMethod],
               opts: RunOptions, store: RecordStore, summary: RunSummary) -> int:
    protocol = plan.protocol
    prepared = prepare_trial(tc, opts.data_root, opts.cache_dir, opts.download, device=opts.device)
    prepared.memo[TRIAL_METHODS] = tuple(pm.method for pm in todo)  # shared passes (engine)
    state = protocol.setup(prepared, numpy_rng(tc.seed, "protocol"))
    common = dict(
        suite=suite.name, suite_version=suite.version, experiment=plan.experiment.name, scale=tc.scale,
        trial=tc.trial, seed=tc.seed, config=to_jsonable(dict(tc.config)), config_hash=tc.hash,
        data_fingerprint=prepared.data_source["data_fingerprint"], protocol=plan.protocol_name,
        trial_metrics=_trial_metric_values(prepared.trial_metrics), data_source=prepared.data_source,
        provenance={"git": git_info(), "packages": package_versions(), "device": device_info(),
                    "training_cache": prepared.training_cache},
    )
    written = 0
    for pm in todo:
        spec = pm.spec
        ident = dict(method=spec.label, method_kind=spec.kind, method_name=spec.name,
                     method_params=to_jsonable(dict(spec.params)), method_hash=pm.hash)
        t0 = time.perf_counter()
        if state is None:
            rec = Record(**common, **ident, granted=[], oracle=[], metrics={}, score_hash=None,
                         wall_time_s=0.0, status="not-evaluated", message=protocol.nothing_to_evaluate)
            summary.not_evaluated += 1
        else:
            result = protocol.evaluate(prepared, state, pm.method, numpy_rng(tc.seed, "method", spec.label))
            rec = Record(**common, **ident, granted=result.granted,
                         oracle=oracle_needs(frozenset(result.granted)),
                         metrics=_metric_values(result.metrics),
                         score_hash=score_hash(result.scores) if result.scores is not None else None,
                         wall_time_s=time.perf_counter() - t0, extra=to_jsonable(result.extra))
        store.write(rec)
        written += 1
    return written


def current_records(suite, output_dir: Path, scale: str | None = None) -> tuple[list, int]:
    """The stored records of ``suite`` that its current definition would produce (same suite
    version, and each trial's config hash equal to what the experiment resolves to now), and the
    number of stale ones left out."""
    return current_of(suite, RecordStore(Path(output_dir)).records(suite.name), scale)


def current_of(suite, records, scale: str | None = None) -> tuple[list, int]:
    """:func:`current_records` of any iterable of records (e.g. a compact export)."""
    out, stale = [], 0
    experiments = {e.name: e for e in suite.experiments}
    hashes: dict[tuple[str, str, int], str] = {}
    for r in records:
        if r.suite != suite.name or (scale is not None and r.scale != scale):
            continue
        exp = experiments.get(r.experiment)
        key = (r.experiment, r.scale, r.trial)
        if exp is not None and key not in hashes:
            hashes[key] = exp.resolve(r.scale, r.trial, suite.seed).hash
        if r.suite_version != suite.version or exp is None or r.config_hash != hashes[key]:
            stale += 1
            continue
        out.append(r)
    return out, stale
