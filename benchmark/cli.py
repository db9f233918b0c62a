"""Command line: ``python -m benchmark {run,list,report}``.

* ``run``     run a suite (default: ``quick`` at scale ``small``), then print its leaderboard.
* ``list``    what is registered, with a one-line description each.
* ``report``  leaderboards (Markdown or LaTeX) and a figure from stored records.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from benchmark.config import ConfigError
from benchmark.data.types import DatasetError, resolve_cache_dir, resolve_data_root
from benchmark.experiment import SCALES
from benchmark.registry import ALL, RegistryError
from benchmark.runner import current_records
from benchmark.store import resolve_output_dir
from benchmark.suggest import did_you_mean

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = REPO_ROOT / "results" / "paper" / "golden_smoke.json"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="quick", help="registered suite (default: quick)")
    p.add_argument("--output-dir", default=None,
                   help="where result records go (default: $BENCHMARK_OUTPUT_DIR or ./runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a suite and print its leaderboard")
    _common(run)
    run.add_argument("--scale", default="small", choices=SCALES)
    run.add_argument("--data-root", default=None,
                     help="dataset root (default: $BENCHMARK_DATA_ROOT or ./data)")
    run.add_argument("--cache-dir", default=None,
                     help="decoded-data and training cache (default: $BENCHMARK_CACHE_DIR or ./.cache/benchmark)")
    run.add_argument("--download", action="store_true", help="allow official download routes")
    run.add_argument("--experiment", action="append", default=[], help="only this experiment (repeatable)")
    run.add_argument("--only", action="append", default=[], metavar="ENTRY",
                     help="only the experiments of this suite entry, e.g. 000-fig1 (repeatable; "
                          "`python -m benchmark list entries` lists them)")
    run.add_argument("--method", action="append", default=[], help="only this method label or name (repeatable)")
    run.add_argument("--trials", type=int, default=None, help="override the number of trials")
    run.add_argument("--seed", type=int, default=None,
                     help="suite seed (default: the suite's own, 0); every trial seed derives from it")
    run.add_argument("--defense", action="append", default=[], metavar="[LABEL:]NAME[=JSON]",
                     help="add a registered defense (in-tree or plugin) to every experiment whose "
                          "protocol evaluates it; optional JSON object of parameters and a label "
                          "(default: the name) (repeatable)")
    run.add_argument("--ranker", action="append", default=[], metavar="[LABEL:]NAME[=JSON]",
                     help="add a registered target ranker to target-identification experiments (repeatable)")
    run.add_argument("--model-path", action="append", default=[], metavar="NAME=DIR",
                     help="load the pretrained model NAME (e.g. bert-base-uncased, a text experiment's "
                          "model.params.pretrained) from the local directory DIR (repeatable; recorded, and "
                          "the weights' fingerprint keys the training cache)")
    run.add_argument("--device", default="cpu", help="torch device for attack-side training (default: cpu)")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--dry-run", action="store_true",
                     help="resolve and validate every trial config and method, run nothing")
    run.add_argument("--probe", action="store_true",
                     help="with --dry-run: also build trial 0 of every experiment at the scale (data, attack, "
                          "model at full size), train --probe-steps steps on a cut of its training set and run "
                          "every method once on it; nothing is recorded")
    run.add_argument("--probe-steps", type=int, default=2, help="training steps of --probe (default 2)")

    lst = sub.add_parser("list", help="list registered components and the suites' entries with their status")
    lst.add_argument("kind", nargs="?", default=None, help=f"one of: {', '.join(ALL)}, entries")

    diag = sub.add_parser("diagnose", help="paper 000 Fig. 2 / Fig. 3 training diagnostics for one trial")
    _common(diag)
    diag.add_argument("--experiment", required=True)
    diag.add_argument("--scale", default="small", choices=SCALES)
    diag.add_argument("--trial", type=int, default=0)
    diag.add_argument("--data-root", default=None)
    diag.add_argument("--cache-dir", default=None)
    diag.add_argument("--max-clean", type=int, default=1000,
                      help="random sample of D_cl used for the loss tracking (all of D_adv is used)")
    diag.add_argument("--figure-dir", default="diagnostics", help="where PNG and JSON files go")

    chk = sub.add_parser("check", help="rerun the golden smoke run and compare it with the committed golden "
                                       "values (fails naming entry, metric, expected, got, tolerance)")
    chk.add_argument("--golden", default=str(DEFAULT_GOLDEN),
                     help=f"golden file (default: {DEFAULT_GOLDEN.relative_to(REPO_ROOT)} in this checkout)")
    chk.add_argument("--data-root", default=None, help="dataset root (default: $BENCHMARK_DATA_ROOT or ./data)")
    chk.add_argument("--cache-dir", default=None)
    chk.add_argument("--output-dir", default=None,
                     help="where the rerun's records go (default: a fresh temporary directory)")
    chk.add_argument("--no-progress", action="store_true")

    rep = sub.add_parser("report", help="render leaderboards from stored records")
    _common(rep)
    rep.add_argument("--format", default="md", choices=("md", "latex"),
                     help="md: Markdown tables; latex: one booktabs table float per table, with a caption "
                          "naming suite, experiment, scale and trials, every text escaped (needs "
                          "\\usepackage{booktabs}); the mitigation protocol's random-removal control "
                          "is a table of its own")
    rep.add_argument("--standalone", action="store_true",
                     help="with --format latex: a complete document (article, geometry, booktabs) that "
                          "compiles as-is, instead of a fragment to \\input")
    rep.add_argument("--figure", default=None, metavar="OUT.png",
                     help="write a seaborn figure to this PNG path: one strip + box panel per experiment "
                          "and scale (its headline metric, e.g. AUPRC; panels of one metric share the y "
                          "axis), 3.4 in wide per panel, two panels per row (6.8 in: a two-column "
                          "paper's text width), 2.8 in per row, 300 dpi")
    rep.add_argument("--figure-per-experiment", action="store_true",
                     help="with --figure OUT.png: instead write one single-panel figure per experiment, "
                          "3.4 x 2.8 in (one paper column), to OUT-<experiment>.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]  # `python -m benchmark` runs the quick suite
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args.kind)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "diagnose":
            return cmd_diagnose(args)
        if args.command == "check":
            return cmd_check(args)
        return cmd_run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; finished records are kept: rerun the same command to resume", file=sys.stderr)
        return 130
    except (RegistryError, ConfigError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_list(kind: str | None) -> int:
    if kind == "entries":
        print(entry_table())
        return 0
    kinds = [kind] if kind else list(ALL)
    for k in kinds:
        if k not in ALL:
            raise RegistryError(f"unknown kind {k!r}{did_you_mean(k, [*ALL, 'entries'])} "
                                f"Kinds: {', '.join(ALL)}, entries")
        print(f"{k}:")
        for e in ALL[k].entries():
            origin = "" if e.origin == "in-tree" else f"  [{e.origin}]"
            print(f"  {e.name:<22} {e.description}{origin}")
    if kind is None:
        print("\nentries (python -m benchmark run --suite SUITE --only ENTRY):")
        print(entry_table())
    return 0


def entry_status(suite, entry, scale: str) -> str:
    """``runs`` or why the entry (or some of its experiments) is not run at ``scale``."""
    if entry.missing is not None:
        return entry.missing.describe()
    parts = []
    for name in entry.experiments:
        why = suite.experiment(name).not_run.get(scale)
        if why is not None:
            parts.append(f"{name}: {why.describe()}")
    n_run = len(entry.experiments) - len(parts)
    if not parts:
        return f"runs ({n_run} experiment{'s' if n_run != 1 else ''})"
    return (f"runs {n_run} of {len(entry.experiments)}; " if n_run else "") + "; ".join(parts)


def entry_table() -> str:
    """Every suite entry with its status at each scale."""
    from benchmark.runner import get_suite

    lines = []
    for e in ALL["suites"].entries():
        suite = get_suite(e.name)
        for entry in suite.entries:
            lines.append(f"  {entry.id:<26} [{suite.name}] paper {entry.paper} {entry.ref}: {entry.title}")
            for scale in SCALES:
                lines.append(f"      {scale:<6} {entry_status(suite, entry, scale)}")
    return "\n".join(lines) if lines else "  (no suite has entries)"


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.runner import RunOptions, get_suite, plan_suite, probe_suite, run_suite, skipped_experiments

    from benchmark.data.pretrained import set_model_path

    for spec in args.model_path:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--model-path {spec!r}: expected NAME=DIR, e.g. bert-base-uncased=/models/bert-base-uncased")
        set_model_path(name, path)
    suite = get_suite(args.suite)
    if args.seed is not None:
        suite = dataclasses.replace(suite, seed=args.seed)
    opts = RunOptions(
        scale=args.scale,
        data_root=resolve_data_root(args.data_root),
        cache_dir=resolve_cache_dir(args.cache_dir),
        output_dir=resolve_output_dir(args.output_dir),
        download=args.download,
        experiments=tuple(args.experiment),
        entries=tuple(args.only),
        methods=tuple(args.method),
        trials=args.trials,
        extra_methods=tuple(method_specs(args.defense, "defenses") + method_specs(args.ranker, "target_rankers")),
        progress=not args.no_progress,
        device=args.device,
    )
    for sk in skipped_experiments(suite, opts):
        print(f"not run at scale {opts.scale}: {sk.experiment} ({sk.why})")
    if args.dry_run:
        plans = plan_suite(suite, opts)
        n_trials = sum(len(p.trials) for p in plans)
        n_methods = sum(len(p.methods) for p in plans)
        print(f"dry run: {n_trials} trial config(s) and {n_methods} method(s) in {len(plans)} experiment(s) "
              f"of suite {suite.name!r} at scale {opts.scale} are valid")
        if args.probe:
            t0 = time.perf_counter()
            probes = probe_suite(suite, opts, args.probe_steps)
            print(f"probe: {len(probes)} experiment(s) built at scale {opts.scale} and every method run on "
                  f"{args.probe_steps} training step(s) ({time.perf_counter() - t0:.0f} s)")
        return 0
    if args.probe:
        raise ConfigError("--probe needs --dry-run")
    t0 = time.perf_counter()
    summary = run_suite(suite, opts)
    print(f"suite {suite.name} v{suite.version} at scale {opts.scale}: {summary.written} record(s) written, "
          f"{summary.skipped} already done, {summary.not_evaluated} not evaluated "
          f"({time.perf_counter() - t0:.1f} s); records in {opts.output_dir}\n")
    print(_render(suite, opts.output_dir, scale=opts.scale))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Rerun the golden file's suite, scale and seed; exit 1 naming every value out of tolerance."""
    from benchmark.golden import compare, entry_names, load_golden, moved, run_and_collect

    from benchmark.runner import get_suite

    golden = load_golden(Path(args.golden))
    version = get_suite(golden["suite"]).version
    if version != golden["suite_version"]:
        raise ConfigError(f"golden file {args.golden} was made for suite {golden['suite']!r} v{golden['suite_version']}, "
                          f"the suite is now v{version}: rebuild it with `python -m benchmark.tools.make_golden`")
    out = args.output_dir
    with tempfile.TemporaryDirectory(prefix="benchmark-check-") as tmp:
        output_dir = Path(out) if out else Path(tmp)
        t0 = time.perf_counter()
        got, suite = run_and_collect(golden["suite"], golden["scale"], int(golden["seed"]),
                                     resolve_data_root(args.data_root), resolve_cache_dir(args.cache_dir),
                                     output_dir, progress=not args.no_progress)
    failures = compare(golden, got, entry_names(suite))
    n = len(golden["values"])
    print(f"check: suite {golden['suite']} v{suite.version} at scale {golden['scale']}, seed {golden['seed']}: "
          f"{n - len(failures)} of {n} golden values within tolerance ({time.perf_counter() - t0:.0f} s)")
    for f in failures:
        print(f"  FAIL {f.describe()}")
    drift = moved(golden, got)
    if drift:
        print(f"  ({len(drift)} value(s) moved within their seed-spread tolerance, e.g. {drift[0].describe()})")
    return 1 if failures else 0


def method_specs(items: list[str], kind: str):
    """``[LABEL:]NAME[=JSON]`` items -> MethodSpecs; the JSON must be an object."""
    import json

    from benchmark.experiment import MethodSpec

    flag = "--defense" if kind == "defenses" else "--ranker"
    specs = []
    for item in items:
        head, sep, params = item.partition("=")
        label, _, name = head.rpartition(":")
        name = name.strip()
        label = label.strip() or name
        try:
            parsed = json.loads(params) if sep else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{flag} {item!r}: parameters must be a JSON object, e.g. "
                              f"{flag} '{name}={{\"key\": 1}}' ({exc})") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"{flag} {item!r}: parameters must be a JSON object (name -> value), got "
                              f"{type(parsed).__name__} {parsed!r}")
        ALL[kind].get(name)  # unknown name -> error with suggestions
        specs.append(MethodSpec(label=label, name=name, kind=kind, params=parsed))
    return specs


def _render(suite, output_dir: Path, scale: str | None = None, fmt: str = "github") -> str:
    from benchmark.report import render

    records, stale = current_records(suite, output_dir, scale)
    comparisons = {e.name: e.comparisons for e in suite.experiments}
    out = render(records, suite.name, fmt=fmt, comparisons=comparisons, min_asr=suite.min_asr, claims=suite.claims,
                 order=[e.name for e in suite.experiments])
    if stale:
        out += (f"\n({stale} stored record(s) of older versions or configurations of suite {suite.name!r} "
                f"left out)\n")
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.report import render, render_figure, render_figures
    from benchmark.runner import get_suite

    suite = get_suite(args.suite)
    output_dir = resolve_output_dir(args.output_dir)
    order = [e.name for e in suite.experiments]
    if args.standalone and args.format != "latex":
        raise ConfigError("--standalone needs --format latex")
    if args.figure_per_experiment and not args.figure:
        raise ConfigError("--figure-per-experiment needs --figure OUT.png")
    if args.format == "latex":  # the stale-records note goes through the LaTeX escaping too
        records, stale = current_records(suite, output_dir)
        notes = [f"({stale} stored record(s) of older versions or configurations of suite {suite.name!r} left out)"]
        print(render(records, suite.name, fmt="latex", min_asr=suite.min_asr, claims=suite.claims,
                     comparisons={e.name: e.comparisons for e in suite.experiments},
                     order=order, standalone=args.standalone, notes=notes if stale else None), end="")
    else:
        print(_render(suite, output_dir))
    if args.figure:
        records, _ = current_records(suite, output_dir)
        if args.figure_per_experiment:
            paths = render_figures(records, Path(args.figure), order=order)
            written = ", ".join(map(str, paths))
        else:
            written = render_figure(records, Path(args.figure), order=order)
        # on stderr with LaTeX, so that stdout stays a document / fragment
        print(f"figure written to {written}" if written else "no records to plot",
              file=sys.stderr if args.format == "latex" else sys.stdout)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Fig. 2 (losses and gradient-norm ratio of D_adv vs D_cl) and Fig. 3 (a target's gradient
    norm split by layer) for one trial of an experiment."""
    import json

    import numpy as np
    import torch

    from benchmark import diagnostics as dg
    from benchmark.rng import numpy_rng
    from benchmark.runner import get_suite
    from benchmark.trial import prepare_trial

    suite = get_suite(args.suite)
    tc = suite.experiment(args.experiment).resolve(args.scale, args.trial, suite.seed)
    p = prepare_trial(tc, resolve_data_root(args.data_root), resolve_cache_dir(args.cache_dir))
    rng = numpy_rng(tc.seed, "diagnose")
    adv = np.flatnonzero(p.is_adv)
    clean = np.flatnonzero(~p.is_adv)
    if len(clean) > args.max_clean:
        clean = np.sort(rng.choice(clean, size=args.max_clean, replace=False))
    idx = torch.as_tensor(np.r_[adv, clean])
    out = Path(args.figure_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{suite.name}-{args.experiment}-{args.scale}-trial{args.trial}"
    result: dict = {"trial_config_hash": tc.hash, "n_adv": len(adv), "n_clean_sampled": len(clean)}
    if len(adv):
        lt = dg.loss_tracking(p.model_factory, p.run, p.train.inputs[idx], p.train.labels[idx], p.is_adv[idx.numpy()])
        print(dg.summarize_loss_tracking(lt))
        print(f"figure: {dg.plot_loss_tracking(lt, out / f'{stem}-fig2.png')}")
        result["loss_tracking"] = lt.to_dict()
    if len(p.successful_targets):
        j = int(rng.choice(p.successful_targets))
        ls = dg.layer_gradient_split(p.model_factory, p.run, p.targets.inputs[j], p.attacked.y_adv[j])
        print(dg.summarize_layer_split(ls))
        print(f"figure: {dg.plot_layer_split([ls], [args.experiment], out / f'{stem}-fig3.png')}")
        result["layer_split"] = ls.to_dict()
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    return 0
