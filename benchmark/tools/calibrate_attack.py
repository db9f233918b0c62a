"""Calibrate an attack's strength on attack success alone, before any defense runs.

For every setting in a grid of attack-parameter overrides, run the experiment's trials (data,
attack, training; no defense) and report attack success rate (the harness's one definition:
successes over eligible targets) and clean accuracy: mean over trials, a t-interval over trials
and the per-trial counts.  (Files written before issue 8 counted every target and gave pooled
Wilson intervals over test inputs; their grids and settings still resolve from their commands.)  The chosen setting is the first one, in grid
order, whose mean ASR reaches ``--min-asr``.  The grid wins over the scale's own attack override
(a key both set takes the grid's value).

    python -m benchmark.tools.calibrate_attack --suite quick --experiment mitigation \\
        --grid '{"epsilon": [0.015, 0.03], "patch_size": [2, 3]}' --trials 10 --scale small

``--dry-run`` resolves and prints every setting's trial configs (attack parameters, trial
hashes) without loading data or training.  The JSON written to stdout records the command that
produced it, with the data root and cache dir as ``"$BENCHMARK_DATA_ROOT"`` /
``"$BENCHMARK_CACHE_DIR"`` (machine paths are not recorded; neither changes the result).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmark.data.types import resolve_cache_dir, resolve_data_root
from benchmark.experiment import Experiment, MethodSpec, TrialConfig, deep_merge
from benchmark.methods import build_method
from benchmark.registry import protocols
from benchmark.rng import numpy_rng
from benchmark.tools import commands

TOOL = "python -m benchmark.tools.calibrate_attack"


@dataclass
class Setting:
    """One grid point: the attack override and the experiment that applies it at ``scale``."""

    override: dict[str, Any]
    probe: Experiment

    def trials(self, scale: str, n: int, suite_seed: int) -> list[TrialConfig]:
        return [self.probe.resolve(scale, t, suite_seed) for t in range(n)]


def settings(exp: Experiment, grid: dict[str, list], scale: str) -> list[Setting]:
    """Every grid point in order (``itertools.product`` over the keys in grid order)."""
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        override = dict(zip(keys, values))
        # The grid wins over the scale's own override too (else a key both set would be ignored).
        scales = {**exp.scales, scale: deep_merge(exp.scales.get(scale, {}), {"attack": {"params": override}})}
        out.append(Setting(override, Experiment(exp.name, exp.description, exp.config, (), scales)))
    return out


def resolve(exp: Experiment, grid: dict[str, list], trials: int, scale: str, min_asr: float,
            suite_seed: int = 0) -> dict:
    """What :func:`calibrate` would run, without data or training."""
    rows = []
    for s in settings(exp, grid, scale):
        tcs = s.trials(scale, trials, suite_seed)
        rows.append({"attack_params": s.override, "attack": tcs[0].values["attack"],
                     "trial_hashes": [tc.hash for tc in tcs]})
    return {"experiment": exp.name, "scale": scale, "trials": trials, "min_asr": min_asr,
            "dry_run": True, "settings": rows}


def scorer_auprc(p, scorers: Sequence[str], seed: int) -> dict[str, float]:
    """AUPRC of D_adv for each trivial scorer (registered defense names) on trial ``p``, through
    the adversarial-set protocol (one random successful target); NaN when no target succeeded."""
    protocol = protocols.get("adversarial-set")()
    state = protocol.setup(p, numpy_rng(seed, "protocol"))
    out = {}
    for name in scorers:
        if state is None:
            out[name] = float("nan")
            continue
        method = build_method(MethodSpec(name, name))
        out[name] = float(protocol.evaluate(p, state, method, numpy_rng(seed, "method", name)).metrics["auprc"])
    return out


def calibrate(exp: Experiment, grid: dict[str, list], trials: int, scale: str, data_root: Path,
              cache_dir: Path, min_asr: float, suite_seed: int = 0, scorers: Sequence[str] = (),
              max_scorer_auprc: float | None = None) -> dict:
    """Attack success and clean accuracy of every grid setting; with ``scorers`` (trivial
    baseline defenses) also their adversarial-set AUPRC, and the chosen setting must keep every
    scorer's mean AUPRC below ``max_scorer_auprc``."""
    from benchmark.metrics import summarize
    from benchmark.trial import prepare_trial

    rows = []
    for s in settings(exp, grid, scale):
        asr, acc, asr_counts, clean_counts = [], [], [], []
        trivial: dict[str, list[float]] = {n: [] for n in scorers}
        t0 = time.perf_counter()
        for tc in s.trials(scale, trials, suite_seed):
            p = prepare_trial(tc, data_root, cache_dir)
            for name, v in scorer_auprc(p, scorers, tc.seed).items():
                trivial[name].append(v)
            h, eligible = p.attack_success()  # the one definition (benchmark.trial)
            pred_c = p.predict(p.test.inputs).numpy()
            c = int((pred_c == p.test.labels.numpy()).sum())
            asr.append(h / eligible if eligible else float("nan"))
            acc.append(c / len(pred_c))
            asr_counts.append([h, eligible])
            clean_counts.append([c, len(pred_c)])
        sa, sc = summarize(asr), summarize(acc)
        rows.append({
            "attack_params": s.override,
            "n_adv": p.attacked.n_adv, "n_train": len(p.train.labels),
            "asr_mean": sa.mean, "asr_per_trial": [round(a, 4) for a in asr],
            "asr_ci95_over_trials": [sa.ci_low, sa.ci_high] if sa.n > 1 else None,
            "asr_counts_per_trial": asr_counts,
            "clean_accuracy_mean": sc.mean,
            "clean_accuracy_ci95_over_trials": [sc.ci_low, sc.ci_high] if sc.n > 1 else None,
            "clean_counts_per_trial": clean_counts,
            "wall_time_s": round(time.perf_counter() - t0, 1),
        })
        if scorers:
            rows[-1]["scorer_auprc_mean"] = {n: summarize(v).mean for n, v in trivial.items()}
            rows[-1]["scorer_auprc_per_trial"] = {n: [round(x, 4) for x in v] for n, v in trivial.items()}

    def ok(r: dict) -> bool:
        if r["asr_mean"] < min_asr:
            return False
        return not scorers or max_scorer_auprc is None or all(
            v < max_scorer_auprc for v in r["scorer_auprc_mean"].values())

    chosen = next((r for r in rows if ok(r)), None)
    extra = {"scorers": list(scorers), "max_scorer_auprc": max_scorer_auprc} if scorers else {}
    return {"experiment": exp.name, "scale": scale, "trials": trials, "min_asr": min_asr, **extra,
            "asr_definition": "successes / eligible targets (benchmark.trial.PreparedTrial.attack_success)",
            "chosen": chosen, "settings": rows}


def command_line(argv: Sequence[str]) -> str:
    """The command as recorded: shell-quoted, path flags replaced by their placeholders."""
    return commands.command_line(TOOL, argv, drop=("--dry-run",))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--grid", required=True, help="JSON object: attack parameter -> list of values")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--min-asr", type=float, default=0.9)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--scorers", nargs="+", default=[], metavar="DEFENSE",
                    help="trivial baseline defenses (e.g. random input-norm loss grad-norm) whose "
                         "adversarial-set AUPRC is measured too (a toy must not be solved by them)")
    ap.add_argument("--max-scorer-auprc", type=float, default=None,
                    help="with --scorers: the chosen setting keeps every scorer's mean AUPRC below this")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the resolved settings and trial hashes; no data, no training")
    return ap.parse_args(argv)


def parse_grid(text: str) -> dict[str, list]:
    return {k: v if isinstance(v, list) else [v] for k, v in json.loads(text).items()}


def parse_command(command: str) -> list[str]:
    """The arguments of a recorded command, placeholders left unexpanded."""
    return commands.parse_command(TOOL, command)


def main(argv: list[str] | None = None) -> int:
    from benchmark.runner import get_suite

    argv = list(argv if argv is not None else sys.argv[1:])
    args = parse_args(argv)
    suite = get_suite(args.suite)
    exp = suite.experiment(args.experiment)
    grid = parse_grid(args.grid)
    if args.dry_run:
        out = resolve(exp, grid, args.trials, args.scale, args.min_asr, suite.seed)
    else:
        out = calibrate(exp, grid, args.trials, args.scale, resolve_data_root(args.data_root),
                        resolve_cache_dir(args.cache_dir), args.min_asr, suite.seed, args.scorers,
                        args.max_scorer_auprc)
    out["command"] = command_line(argv)
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
