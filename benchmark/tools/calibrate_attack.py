"""Calibrate an attack's strength on attack success alone, before any defense runs.

For every setting in a grid of attack-parameter overrides, run the experiment's trials (data,
attack, training; no defense) and report attack success rate and clean accuracy (mean over trials
and pooled Wilson 95% intervals over test inputs).  The chosen setting is the first one, in grid
order, whose mean ASR reaches ``--min-asr``.

    python -m benchmark.tools.calibrate_attack --suite quick --experiment mitigation \\
        --grid '{"epsilon": [0.015, 0.03], "patch_size": [2, 3]}' --trials 10 --scale small
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.data.types import resolve_cache_dir, resolve_data_root
from benchmark.experiment import Experiment, deep_merge
from benchmark.metrics import binomial_ci
from benchmark.trial import prepare_trial


def calibrate(exp: Experiment, grid: dict[str, list], trials: int, scale: str, data_root: Path,
              cache_dir: Path, min_asr: float, suite_seed: int = 0) -> dict:
    keys = list(grid)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        override = dict(zip(keys, values))
        # The grid wins over the scale's own override too (else a key both set would be ignored).
        scales = {**exp.scales, scale: deep_merge(exp.scales.get(scale, {}), {"attack": {"params": override}})}
        probe = Experiment(exp.name, exp.description, exp.config, (), scales)
        asr, acc, hits, n_t, correct, n_c = [], [], 0, 0, 0, 0
        t0 = time.perf_counter()
        for t in range(trials):
            p = prepare_trial(probe.resolve(scale, t, suite_seed), data_root, cache_dir)
            pred_t = p.predict(p.targets.inputs).numpy()
            pred_c = p.predict(p.test.inputs).numpy()
            h = int((pred_t == p.attacked.y_adv.numpy()).sum())
            c = int((pred_c == p.test.labels.numpy()).sum())
            asr.append(h / len(pred_t))
            acc.append(c / len(pred_c))
            hits, n_t, correct, n_c = hits + h, n_t + len(pred_t), correct + c, n_c + len(pred_c)
        rows.append({
            "attack_params": override,
            "n_adv": p.attacked.n_adv, "n_train": len(p.train.labels),
            "asr_mean": float(np.mean(asr)), "asr_per_trial": [round(a, 4) for a in asr],
            "asr_pooled_ci95": list(binomial_ci(hits, n_t)), "n_target_inputs": n_t,
            "clean_accuracy_mean": float(np.mean(acc)), "clean_accuracy_pooled_ci95": list(binomial_ci(correct, n_c)),
            "n_test_inputs": n_c, "wall_time_s": round(time.perf_counter() - t0, 1),
        })
    chosen = next((r for r in rows if r["asr_mean"] >= min_asr), None)
    return {"experiment": exp.name, "scale": scale, "trials": trials, "min_asr": min_asr,
            "chosen": chosen, "settings": rows}


def main(argv: list[str] | None = None) -> int:
    from benchmark.runner import get_suite

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--grid", required=True, help="JSON object: attack parameter -> list of values")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--min-asr", type=float, default=0.9)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    suite = get_suite(args.suite)
    grid = {k: v if isinstance(v, list) else [v] for k, v in json.loads(args.grid).items()}
    out = calibrate(suite.experiment(args.experiment), grid, args.trials, args.scale,
                    resolve_data_root(args.data_root), resolve_cache_dir(args.cache_dir), args.min_asr,
                    suite.seed)
    out["command"] = "python -m benchmark.tools.calibrate_attack " + " ".join(
        a if " " not in a and "{" not in a else f"'{a}'" for a in (argv if argv is not None else sys.argv[1:]))
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
