"""Leaderboards from result records: mean ± std, 95% confidence intervals, paired differences,
the papers' reported numbers beside ours, and a seaborn figure."""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tabulate import tabulate

from benchmark.metrics import higher_is_better, paired_difference, summarize
from benchmark.store import Record

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
PAPER_NUMBERS = RESULTS_DIR / "paper_numbers.json"


@dataclass(frozen=True)
class PaperNumber:
    suite: str
    experiment: str
    method: str
    metric: str
    value: float
    citation: str  # paper, table / section
    quote: str  # the text as printed in the paper (a test finds it there)


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> list[PaperNumber]:
    if not path.is_file():
        return []
    return [PaperNumber(**row) for row in json.loads(path.read_text())["numbers"]]


def _group(records: Iterable[Record]) -> dict[tuple[str, str], list[Record]]:
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.experiment, r.scale)].append(r)
    return groups


def disambiguate_labels(records: list[Record]) -> list[Record]:
    """Records whose label was used with several parameter sets in one experiment (e.g. an old
    and a new ``--defense gas-l=...``) get their method hash appended to the label, so one row
    never mixes two configurations."""
    hashes: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        hashes[(r.experiment, r.method)].add(r.method_hash)
    out = []
    for r in records:
        if len(hashes[(r.experiment, r.method)]) > 1:
            r = dataclasses.replace(r, method=f"{r.method} [{r.method_hash}]")
        out.append(r)
    return out


def render(records: list[Record], suite_name: str, fmt: str = "github",
           comparisons: dict[str, tuple[tuple[str, str], ...]] | None = None,
           paper_numbers: list[PaperNumber] | None = None, order: list[str] | None = None) -> str:
    """Markdown (``fmt='github'``) or LaTeX (``fmt='latex'``) leaderboards, one per experiment/scale,
    in ``order`` (the suite's experiment order; others follow alphabetically)."""
    if not records:
        return f"No records for suite {suite_name!r} yet: run `python -m benchmark run --suite {suite_name}`."
    records = disambiguate_labels(records)
    rank = {name: i for i, name in enumerate(order or [])}
    comparisons = comparisons or {}
    paper_numbers = paper_numbers if paper_numbers is not None else load_paper_numbers()
    out: list[str] = []
    attack_only = [r for r in records if r.protocol == "attack-success"]
    if attack_only:
        out.append(render_attack_table(attack_only, fmt))
    records = [r for r in records if r.protocol != "attack-success"]
    groups = _group(records)
    for (experiment, scale) in sorted(groups, key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1])):
        recs = groups[(experiment, scale)]
        ok = [r for r in recs if r.status == "ok"]
        skipped = [r for r in recs if r.status == "not-evaluated"]
        failed_trials = sorted({r.trial for r in skipped})
        trials = sorted({r.trial for r in recs})
        out.append(f"### {suite_name} / {experiment} (scale: {scale}, {len(trials)} trials)\n")
        out.append(_trial_line(recs, failed_trials, skipped[0].message if skipped else ""))
        metrics = _metric_order({m for r in ok for m in r.metrics})
        by_method: dict[str, list[Record]] = defaultdict(list)
        for r in ok:
            by_method[r.method].append(r)
        paper = {(p.method, p.metric): p for p in paper_numbers
                 if p.suite == suite_name and p.experiment == experiment}
        compact = len(metrics) > 3  # many metrics: mean ± std per cell, one n column
        rows = []
        for method in sorted(by_method, key=lambda m: _sort_key(by_method[m], metrics)):
            row = [method]
            for metric in metrics:
                s = summarize([r.metric(metric) for r in by_method[method]])
                row += [s.fmt()] if compact else [s.fmt(), s.fmt_ci(), s.n]
                if paper and (not compact or any((m_, metric) in paper for m_ in by_method)):
                    p = paper.get((method, metric))
                    row.append(f"{p.value:g} ({p.citation})" if p else "–")
            if compact:
                row.append(len(by_method[method]))
            rows.append(row)
        headers = ["method"]
        for metric in metrics:
            arrow = "↑" if higher_is_better(metric) else "↓"
            headers += [f"{metric} {arrow}"] if compact else [f"{metric} {arrow} (mean ± std)", "95% CI", "n"]
            if paper and (not compact or any((m_, metric) in paper for m_ in by_method)):
                headers.append(f"paper {metric}")
        if compact:
            headers.append("n")
        if rows:
            out.append(tabulate(rows, headers=headers, tablefmt=fmt))
            out.append("")
        for a, b in comparisons.get(experiment, ()):
            out.append(_comparison_line(by_method, a, b, metrics))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_attack_table(records: list[Record], fmt: str = "github") -> str:
    """One row per (experiment, scale) of the attack-success protocol: poisoning ratio, attack
    success rate and clean accuracy as the mean over trials with a Student-t 95% interval over
    trials (the same test inputs are reused in every trial, so pooled inputs are not independent
    draws), the pooled counts behind them, and the training wall time."""
    rows = []
    for (experiment, scale), recs in sorted(_group(records).items()):
        asr = summarize([r.metric("asr_no_defense") for r in recs])
        acc = summarize([r.metric("clean_accuracy") for r in recs])
        hits = sum(r.extra["asr_counts"][0] for r in recs)
        n_t = sum(r.extra["asr_counts"][1] for r in recs)
        ok = sum(r.extra["clean_counts"][0] for r in recs)
        n_c = sum(r.extra["clean_counts"][1] for r in recs)
        ratio = summarize([r.extra["poison_ratio"] for r in recs]).mean
        wall = summarize([r.extra["training_wall_time_s"] for r in recs]).mean
        rows.append([experiment, scale, len(recs), f"{ratio:.4f}",
                     f"{asr.mean:.3f} {asr.fmt_ci()} ({hits}/{n_t})",
                     f"{acc.mean:.3f} {acc.fmt_ci()} ({ok}/{n_c})", f"{wall:.0f}"])
    headers = ["experiment", "scale", "trials", "poison ratio",
               "ASR, mean over trials [95% t-CI] (pooled eligible targets)",
               "clean acc. [95% t-CI] (pooled test inputs)", "train s/trial"]
    return "### Attack success (no defense)\n\n" + tabulate(rows, headers=headers, tablefmt=fmt) + "\n"


#: Column order (Table 1 of paper 000 for mitigation); metrics not listed follow alphabetically.
METRIC_ORDER = (
    "auprc", "target_rank", "pct_adv_removed", "pct_clean_removed", "attack_success_rate",
    "asr_all_targets", "clean_accuracy", "clean_accuracy_change", "retrain_rounds",
    "control_pct_adv_removed", "control_pct_clean_removed", "control_attack_success_rate",
    "control_asr_all_targets", "control_clean_accuracy", "control_clean_accuracy_change",
)


def _metric_order(names: set[str]) -> list[str]:
    known = [m for m in METRIC_ORDER if m in names]
    return known + sorted(n for n in names if n not in METRIC_ORDER)


def _sort_key(recs: list[Record], metrics: list[str]) -> float:
    if not metrics:
        return 0.0
    m = metrics[0]
    s = summarize([r.metric(m) for r in recs])
    sign = -1.0 if higher_is_better(m) else 1.0
    return sign * s.mean if s.n else float("inf")


def _trial_line(recs: list[Record], failed_trials: list[int], why: str) -> str:
    per_trial = {r.trial: r for r in recs}
    parts = []
    for name in ("clean_accuracy", "asr_no_defense"):
        vals = [r.metric(name) for r in per_trial.values()]
        s = summarize([v for v in vals if v is not None])
        if s.n:
            parts.append(f"{name} {s.fmt()} (95% CI {s.fmt_ci()})")
    line = "Attack: " + "; ".join(parts) if parts else "Attack: –"
    if failed_trials:
        line += f"; not evaluated in trial(s) {failed_trials} ({why}): no method numbers for them"
    return line + "\n"


def _comparison_line(by_method: dict[str, list[Record]], a: str, b: str, metrics: list[str]) -> str:
    lines = []
    for metric in metrics:
        va = {r.trial: r.metric(metric) for r in by_method.get(a, [])}
        vb = {r.trial: r.metric(metric) for r in by_method.get(b, [])}
        common = sorted(t for t in va if t in vb and va[t] is not None and vb[t] is not None)
        if not common:
            continue
        d = paired_difference([va[t] for t in common], [vb[t] for t in common])
        wins = sum(va[t] > vb[t] for t in common)
        lines.append(
            f"Paired difference {a} − {b} ({metric}): {d.mean:+.3f} "
            f"(95% CI {d.fmt_ci()}, n = {d.n}; {a} higher in {wins}/{len(common)} trials)"
        )
    return "\n".join(lines)


def render_figure(records: list[Record], path: Path, metric: str = "auprc") -> Path | None:
    """A strip + box plot of ``metric`` per method and experiment (seaborn)."""
    rows = [{"experiment": r.experiment, "method": r.method, metric: r.metric(metric)}
            for r in records if r.status == "ok" and r.metric(metric) is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame(rows)
    experiments = sorted(frame["experiment"].unique())
    fig, axes = plt.subplots(1, len(experiments), figsize=(4 + 1.2 * frame["method"].nunique(), 3.6),
                             squeeze=False)
    for ax, exp in zip(axes[0], experiments):
        sub = frame[frame["experiment"] == exp]
        order = sub.groupby("method")[metric].mean().sort_values(ascending=False).index.tolist()
        sns.boxplot(data=sub, x="method", y=metric, order=order, ax=ax, color="0.9", fliersize=0)
        sns.stripplot(data=sub, x="method", y=metric, order=order, ax=ax, size=4, alpha=0.8)
        ax.set_title(exp)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
