"""Build the golden file of ``python -m benchmark check``: the suite's smoke run under its own seed
(the expected values), under other suite seeds (the seed-to-seed spread that sets each
tolerance, :mod:`benchmark.golden`) and under its own seed on other thread counts (rounding reruns).

    python -m benchmark.tools.make_golden --suite paper --scale smoke --seeds 1 2 3 4 \\
        --data-root "$BENCHMARK_DATA_ROOT" --output results/paper/golden_smoke.json

Each seed's records go to ``<work-dir>/seed-<s>`` (resumable: a killed build reruns only what is
missing).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmark.data.types import resolve_cache_dir, resolve_data_root
from benchmark.golden import ROUNDING_THREADS, build_golden, golden_values, run_and_collect
from benchmark.tools import commands


def _rounding_cache(cache_dir: Path, threads: int) -> Path:
    """A cache dir for a rounding rerun: the data caches of ``cache_dir`` linked in, a training
    cache of its own (a cached model would hide the rerun's training in another summation order)."""
    out = Path(cache_dir) / f"rounding-threads-{threads}"
    out.mkdir(parents=True, exist_ok=True)
    for entry in Path(cache_dir).iterdir():
        if entry.name in ("training", out.name) or entry.name.startswith("rounding-threads-"):
            continue
        link = out / entry.name
        if not link.exists():
            link.symlink_to(entry.resolve())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.tools.make_golden", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="paper")
    p.add_argument("--scale", default="smoke")
    p.add_argument("--seed", type=int, default=0, help="the suite seed `check` reruns (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4],
                   help="further suite seeds whose spread sets the tolerances (default: 1 2 3 4)")
    p.add_argument("--rounding-threads", type=int, nargs="*", default=list(ROUNDING_THREADS),
                   help="thread counts of the rounding reruns of --seed (default: %(default)s; none: no reruns)")
    p.add_argument("--replica-golden-rev", nargs="*", default=[], metavar="REV",
                   help="git revisions whose --output file (same suite version and seed, built on another "
                        "machine) counts as a rounding rerun: its expected values are measured cross-machine moves")
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--work-dir", default="runs/golden",
                   help="records of every seed (default: runs/golden; not recorded in the command: it does not "
                        "change the result)")
    p.add_argument("--output", required=True, help="golden JSON file to write")
    args = p.parse_args(argv)
    data_root, cache_dir = resolve_data_root(args.data_root), resolve_cache_dir(args.cache_dir)
    by_seed = {}
    suite = None
    for s in [args.seed, *[x for x in args.seeds if x != args.seed]]:
        print(f"seed {s} ...", file=sys.stderr)
        by_seed[s], suite = run_and_collect(args.suite, args.scale, s, data_root, cache_dir,
                                            Path(args.work_dir) / f"seed-{s}")
    assert suite is not None
    rounding = {}
    for t in args.rounding_threads:
        print(f"seed {args.seed} on {t} threads (rounding rerun) ...", file=sys.stderr)
        rounding[t], _ = run_and_collect(args.suite, args.scale, args.seed, data_root, _rounding_cache(cache_dir, t),
                                         Path(args.work_dir) / f"seed-{args.seed}-threads-{t}", threads=t)
    for rev in args.replica_golden_rev:
        earlier = json.loads(subprocess.run(["git", "show", f"{rev}:{args.output}"], check=True, capture_output=True,
                                            text=True).stdout)
        if (earlier["suite"], earlier["suite_version"], earlier["scale"], earlier["seed"]) != (
                args.suite, suite.version, args.scale, args.seed):
            raise SystemExit(f"--replica-golden-rev {rev}: {args.output} there is suite {earlier['suite']!r} "
                             f"v{earlier['suite_version']} {earlier['scale']} seed {earlier['seed']}, not this build's")
        rounding[f"golden@{rev}"] = golden_values(earlier)
    command = commands.command_line("python -m benchmark.tools.make_golden",
                                    list(argv if argv is not None else sys.argv[1:]))
    golden = build_golden(by_seed[args.seed], by_seed, suite=args.suite, suite_version=suite.version,
                          scale=args.scale, seed=args.seed, command=command, rounding=rounding)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(golden, indent=1, sort_keys=False) + "\n")
    print(f"wrote {out}: {len(golden['values'])} values, seeds {golden['seeds']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
