"""Poison counts |D_adv| / |D_tr| of every experiment of a suite (default ``attack-strength``) at
each scale, with the poison-rate definition each attack uses and where its rate comes from.

For each experiment and scale the trial-0 config is resolved and its attack crafted on the real
data (no training of the victim).  Counts never depend on the trigger, so ``input-aware`` is
crafted with untrained networks (``mask_steps = gen_steps = 0``: a dry crafting path through the
same recipe; the counts are those of a real craft).  Scales named in ``--from-config`` are not
crafted: their counts come from each attack's ``poison_counts`` (config + the class sizes of the
loaded training split), the same code :meth:`craft` counts with; for crafted scales the tool
checks that both agree.

    python -m benchmark.tools.poison_rates --scale smoke --scale small --scale full \\
        --out results/poison_rates.md

The Markdown starts with the command that produced it (machine paths as
``"$BENCHMARK_DATA_ROOT"`` / ``"$BENCHMARK_CACHE_DIR"``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.api import RunContext
from benchmark.config import Sourced
from benchmark.data.types import resolve_cache_dir, resolve_data_root
from benchmark.experiment import SCALES, Experiment
from benchmark.registry import attacks, datasets
from benchmark.rng import numpy_rng
from benchmark.tools import commands

TOOL = "python -m benchmark.tools.poison_rates"
#: Per attack: parameter overrides that skip work the counts do not depend on (dry crafting).
DRY_CRAFT = {"input-aware": {"mask_steps": 0, "gen_steps": 0}}


class Loader:
    """Loads each dataset once (keyed by name and parameters)."""

    def __init__(self, data_root: Path, cache_dir: Path) -> None:
        self.data_root, self.cache_dir, self._memo = data_root, cache_dir, {}

    def __call__(self, name: str, params: dict | None = None):
        key = (name, repr(sorted((params or {}).items())))
        if key not in self._memo:
            self._memo[key] = datasets.get(name)(data_root=self.data_root, cache_dir=self.cache_dir,
                                                 download=False, **(params or {}))
        return self._memo[key]


def rate_source(tc_config: dict) -> str:
    """Where the attack's rate / count comes from: the source of ``epsilon`` when it is set,
    else of ``n_adv`` (``adv_fraction`` for the toy)."""
    params = tc_config["attack"]["params"]
    for key in ("epsilon", "n_adv", "adv_fraction"):
        v = params.get(key)
        if isinstance(v, Sourced) and v.value is not None:
            return f"{key}: {v.source}"
    return "attack default"


def count(exp: Experiment, scale: str, suite_seed: int, load: Loader, craft: bool) -> dict[str, Any]:
    tc = exp.resolve(scale, 0, suite_seed)
    values = tc.values
    spec, ds = values["attack"], values["dataset"]
    cls = attacks.get(spec["name"])
    raw = load(ds["name"], ds.get("params", {}))
    sizes = torch.bincount(raw.train.labels, minlength=raw.num_classes).tolist()
    planned = cls(**spec.get("params", {})).poison_counts(sizes)
    row = {"experiment": exp.name, "attack": spec["name"], "scale": scale,
           "definition": cls.epsilon_definition, "source": rate_source(dict(tc.config)),
           "n_adv": planned.n_adv, "n_train": planned.n_train, "n_aux": planned.n_aux,
           "method": "config"}
    if craft:
        t0 = time.perf_counter()
        params = {**spec.get("params", {}), **DRY_CRAFT.get(spec["name"], {})}
        attack = cls(**params)
        extra = {n: load(n) for n in getattr(cls, "extra_datasets", ())}
        d = attack.craft(raw, numpy_rng(tc.seed, "attack"), RunContext(cache_dir=None, device="cpu", extra=extra))
        got = (d.n_adv, len(d.train), int(d.info.get("n_aux", 0)))
        if got != (planned.n_adv, planned.n_train, planned.n_aux):
            raise AssertionError(f"{exp.name} [{scale}]: crafted (n_adv, |D_tr|, n_aux) = {got}, but "
                                 f"poison_counts says {(planned.n_adv, planned.n_train, planned.n_aux)}")
        row.update(method="crafted" + (" (dry: " + ", ".join(f"{k}={v}" for k, v in DRY_CRAFT[spec["name"]].items())
                                       + ")" if spec["name"] in DRY_CRAFT else ""),
                   craft_s=round(time.perf_counter() - t0, 1))
    return row


def esc(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    aux = f" (+{row['n_aux']:,} correctly labelled attacker examples inside)" if row["n_aux"] else ""
    return f"{row['n_adv']:,} / {row['n_train']:,} = {100 * row['n_adv'] / row['n_train']:.2f} %{aux}"


def render(rows: list[dict[str, Any]], scales: list[str], command: str, suite: str) -> str:
    by = {(r["experiment"], r["scale"]): r for r in rows}
    names = list(dict.fromkeys(r["experiment"] for r in rows))
    out = ["```sh", command, "```", "",
           f"# Poison rates of the `{suite}` suite: |D_adv| / |D_tr| of the trained set", "",
           "One definition (issue 8): ε = |D_adv| / |D_tr| of the set the victim is trained on, attacker "
           "examples that keep their true label (composite's benign mixes, input-aware's cross-trigger "
           "examples) counted in |D_tr| but not in D_adv; only paper 000 Sec. 4.1's joint CIFAR-10 + MNIST "
           "attack adds a count to a given clean set. Trial 0 of each experiment.", "",
           "| experiment | attack | ε definition | " + " | ".join(f"\\|D_adv\\| / \\|D_tr\\| at `{s}`" for s in scales)
           + " | source of ε or count |",
           "|" + "---|" * (4 + len(scales))]
    for name in names:
        first = next(by[(name, s)] for s in scales if (name, s) in by)
        srcs = {s: by[(name, s)]["source"] for s in scales if (name, s) in by}
        src = next(iter(srcs.values())) if len(set(srcs.values())) == 1 else \
            "; ".join(f"`{s}`: {v}" for s, v in srcs.items())
        out.append(f"| {name} | `{first['attack']}` | {esc(first['definition'])} | "
                   + " | ".join(cell(by.get((name, s))) for s in scales) + f" | {esc(src)} |")
    out += ["", "How each count was obtained:", ""]
    for s in scales:
        kinds: dict[str, list[str]] = {}
        for n in names:
            if (n, s) in by:
                kinds.setdefault(by[(n, s)]["method"], []).append(n)
        total = sum(by[(n, s)].get("craft_s", 0) for n in names if (n, s) in by)
        how = "; ".join(f"{m}" + ("" if len(kinds) == 1 else f" ({', '.join(v)})") for m, v in kinds.items())
        out.append(f"- `{s}`: {how}" + (f"; crafting took {total:.0f} s on CPU" if total else ""))
    out += ["", "`crafted`: the attack crafted on the real data (no training of the victim) and checked "
            "against `poison_counts`; `config`: `poison_counts` from the resolved config and the class sizes "
            "of the loaded training split, the same counting code `craft` uses.", ""]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmark.runner import get_suite

    argv = list(argv if argv is not None else sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="attack-strength")
    ap.add_argument("--scale", action="append", choices=SCALES, help="repeatable; default: every scale")
    ap.add_argument("--from-config", action="append", choices=SCALES, default=[],
                    help="count these scales from the configs without crafting (repeatable)")
    ap.add_argument("--experiment", action="append", help="only these experiments (repeatable)")
    ap.add_argument("--out", default=None, help="write the Markdown table here (default: stdout)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--cache-dir", default=None, help="decoded-data cache")
    args = ap.parse_args(argv)
    suite = get_suite(args.suite)
    scales = [s for s in SCALES if s in (args.scale or SCALES)]
    load = Loader(resolve_data_root(args.data_root), resolve_cache_dir(args.cache_dir))
    rows = []
    for exp in suite.experiments:
        if args.experiment and exp.name not in args.experiment:
            continue
        for s in scales:
            row = count(exp, s, suite.seed, load, craft=s not in args.from_config)
            print(f"{exp.name} [{s}]: {cell(row)} ({row['method']}, {row.get('craft_s', 0)} s)",
                  file=sys.stderr, flush=True)
            rows.append(row)
    text = render(rows, scales, commands.command_line(TOOL, argv), suite.name)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
