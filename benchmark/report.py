"""Leaderboards from result records: mean ± std, 95% confidence intervals, paired differences,
the papers' reported numbers beside ours (Markdown, or LaTeX that compiles as-is with booktabs),
and seaborn figures sized for a paper column."""
from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tabulate import tabulate

from benchmark.claims import claim_rows
from benchmark.claims import evaluate as evaluate_claims
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
    and a new ``--defense gas-l=...``), or on several datasets (another ``--data-root``), get the
    method hash / data fingerprint appended to the label, so one row never mixes two
    configurations."""
    hashes: dict[tuple[str, str], set[str]] = defaultdict(set)
    fps: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        hashes[(r.experiment, r.method)].add(r.method_hash)
        fps[(r.experiment, r.method)].add(r.data_fingerprint)
    out = []
    for r in records:
        key = (r.experiment, r.method)
        tags = ([r.method_hash] if len(hashes[key]) > 1 else []) + \
               ([f"data {r.data_fingerprint}"] if len(fps[key]) > 1 else [])
        if tags:
            r = dataclasses.replace(r, method=f"{r.method} [{', '.join(tags)}]")
        out.append(r)
    return out


# -- plain-text layout shared by the Markdown and LaTeX output -------------------------------

#: Metrics of the ``mitigation`` protocol's random-removal control carry this prefix.
CONTROL_PREFIX = "control_"
CONTROL_TITLE = "random-removal control (same number of examples removed as the method in each row)"
CONTROL_CAPTION = "random-removal control, as many examples removed as by the method in each row"


@dataclass
class Table:
    """One table: plain-text (Unicode) headers and cells, escaped only when rendered as LaTeX."""

    caption: str  # LaTeX \caption (plain text)
    label: str  # LaTeX \label key
    headers: list[str]
    rows: list[list]
    title: str | None = None  # Markdown line above the table (None: the section heading says it)
    latex_headers: list[str] | None = None  # ready-made LaTeX headers (None: escape ``headers``)


@dataclass
class Section:
    heading: str
    before: list[str]  # sentences before the tables (the attack line)
    tables: list[Table]
    after: list[str]  # sentences after them (paired differences)


def render(records: list[Record], suite_name: str, fmt: str = "github",
           comparisons: dict[str, tuple[tuple[str, str], ...]] | None = None,
           paper_numbers: list[PaperNumber] | None = None, order: list[str] | None = None,
           standalone: bool = False, notes: list[str] | None = None, min_asr: float | None = None,
           claims: tuple = (), references: dict[str, str] | None = None) -> str:
    """Markdown (``fmt='github'``, or another ``tabulate`` format) or LaTeX (``fmt='latex'``)
    leaderboards, one section per experiment/scale, in ``order`` (the suite's experiment order;
    others follow alphabetically).

    Each section is the attack line, the method table and, for the ``mitigation`` protocol, the
    random-removal control in a table of its own (rows: the method whose removal count the
    control matched), then the paired differences.  LaTeX is a fragment that compiles as-is with
    ``booktabs``: one ``table`` float with a caption per table, every text escaped
    (:func:`latex_escape`); ``standalone=True`` wraps it in a minimal ``article`` document.
    ``notes`` are sentences appended at the end.  With ``min_asr``, an experiment whose mean
    attack success without defense is below it shows its attack line and that the attack did not
    succeed, and no method table (a defense measured against a failed attack says nothing).
    ``claims`` (:class:`benchmark.claims.Claim`) add a claims table per scale at the end;
    ``references`` (experiment -> where it is in the papers) mark experiments without a paper
    number in ``results/paper_numbers.json`` as n/a (figure only)."""
    latex = fmt.startswith("latex")
    if not records:
        msg = f"No records for suite {suite_name!r} yet: run `python -m benchmark run --suite {suite_name}`."
        if not latex:
            return msg + "".join(f"\n\n{n}" for n in notes or ()) + ("\n" if notes else "")
        return _latex_output([], [msg, *(notes or ())], standalone)
    sections = build_sections(records, suite_name, comparisons, paper_numbers, order, min_asr, references)
    sections += claim_sections(records, suite_name, claims, min_asr)
    if latex:
        return _latex_output(sections, list(notes or ()), standalone)
    out: list[str] = []
    for sec in sections:
        if sec.heading == ATTACK_HEADING:
            out.append(_markdown_attack(sec.tables[0], fmt))
            continue
        out.append(f"### {sec.heading}\n")
        out.extend(sec.before)
        for t in sec.tables:
            if t.title:
                out.append(f"{t.title}:\n")
            out.append(tabulate(t.rows, headers=t.headers, tablefmt=fmt))
            out.append("")
        out.extend(sec.after)
        out.append("")
    text = "\n".join(out).rstrip() + "\n"
    return text + "".join(f"\n{n}\n" for n in notes or ())


def build_sections(records: list[Record], suite_name: str,
                   comparisons: dict[str, tuple[tuple[str, str], ...]] | None = None,
                   paper_numbers: list[PaperNumber] | None = None,
                   order: list[str] | None = None, min_asr: float | None = None,
                   references: dict[str, str] | None = None) -> list[Section]:
    """The report's content, independent of the output format (see :func:`render`)."""
    records = disambiguate_labels(records)
    rank = {name: i for i, name in enumerate(order or [])}
    comparisons = comparisons or {}
    paper_numbers = paper_numbers if paper_numbers is not None else load_paper_numbers()
    sections: list[Section] = []
    attack_only = [r for r in records if r.protocol == "attack-success"]
    if attack_only:
        sections.append(Section(ATTACK_HEADING, [], [_attack_table(attack_only, suite_name)], []))
    records = [r for r in records if r.protocol != "attack-success"]
    groups = _group(records)
    for (experiment, scale) in sorted(groups, key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1])):
        recs = groups[(experiment, scale)]
        ok = [r for r in recs if r.status == "ok"]
        skipped = [r for r in recs if r.status == "not-evaluated"]
        failed_trials = sorted({r.trial for r in skipped})
        trials = sorted({r.trial for r in recs})
        where = f"scale: {scale}, {len(trials)} trials"
        heading = f"{suite_name} / {experiment} ({where})"
        metrics = _metric_order({m for r in ok for m in r.metrics})
        own = [m for m in metrics if not m.startswith(CONTROL_PREFIX)]
        control = [m for m in metrics if m.startswith(CONTROL_PREFIX)]
        by_method: dict[str, list[Record]] = defaultdict(list)
        for r in ok:
            by_method[r.method].append(r)
        paper = {(p.method, p.metric): p for p in paper_numbers
                 if p.suite == suite_name and p.experiment == experiment}
        methods = sorted(by_method, key=lambda m: _sort_key(by_method[m], own))
        label = "tab:" + _label(f"{suite_name}-{experiment}-{scale}")
        tables = []
        headers, rows, tex = _metric_table(by_method, methods, own, paper, "method")
        if rows:
            tables.append(Table(f"{heading}{_cells_note(own)}.", label, headers, rows, latex_headers=tex))
        cited = sorted({p.citation.split(" (")[0] for p in paper.values()})
        if control:
            headers, rows, tex = _metric_table(by_method, methods, control, paper, "matched to")
            if rows:
                tables.append(Table(f"{suite_name} / {experiment}: {CONTROL_CAPTION} ({where}){_cells_note(control)}.",
                                    label + "-control", headers, rows,
                                    title=CONTROL_TITLE[0].upper() + CONTROL_TITLE[1:], latex_headers=tex))
        after = [_comparison_line(by_method, a, b, metrics) for a, b in comparisons.get(experiment, ())]
        before = [_trial_line(recs, failed_trials, skipped[0].message if skipped else "")]
        if cited:
            before.append(f"Paper columns: the paper's number ({'; '.join(cited)}) and ours minus it; ours are "
                          f"at scale {scale}.\n")
        elif references and experiment in references:
            before.append(f"Paper's numbers: n/a (no number of {references[experiment]} is stated in the "
                          f"paper's text for this setting; figure-only values are not transcribed).\n")
        weak = attack_not_successful(recs, min_asr)
        if weak is not None:
            before.append(f"Attack not successful at scale {scale}: mean ASR without defense {weak:.3f} < "
                          f"{min_asr:g}; the defenses' numbers are not reported (they would measure nothing).\n")
            tables, after = [], []
        sections.append(Section(heading, before, tables, after))
    return sections


def claim_sections(records: list[Record], suite_name: str, claims: tuple, min_asr: float | None) -> list[Section]:
    """One claims table per scale (:mod:`benchmark.claims`); experiments whose attack did not
    succeed are not evaluated."""
    if not claims:
        return []
    out = []
    for scale in sorted({r.scale for r in records}):
        recs = [r for r in records if r.scale == scale]
        by_exp: dict[str, list[Record]] = defaultdict(list)
        for r in recs:
            by_exp[r.experiment].append(r)
        weak = [e for e, rs in by_exp.items() if attack_not_successful(rs, min_asr) is not None]
        headers, rows = claim_rows(evaluate_claims(claims, recs, scale, weak))
        heading = f"{suite_name}: the papers' claims at scale {scale}"
        before = ["A check holds when the paired per-trial difference (or the mean) points the claimed way; "
                  "'significant' when its 95% t-interval over trials excludes 0 (or the bound)."
                  + (f" Not evaluated: experiments whose attack did not succeed ({', '.join(sorted(weak))})."
                     if weak else "") + "\n"]
        out.append(Section(heading, before, [Table(f"{heading}.", "tab:" + _label(f"{suite_name}-claims-{scale}"),
                                                   headers, rows)], []))
    return out


def attack_not_successful(recs: list[Record], min_asr: float | None) -> float | None:
    """The mean ASR without defense over the trials of ``recs`` when it is below ``min_asr``
    (trials where no target was flipped count as ASR 0), else ``None``."""
    if min_asr is None:
        return None
    per_trial = {r.trial: r for r in recs}
    if per_trial and all(_attack_fact(r, "n_targets") == 0 for r in per_trial.values()):
        return None  # no attack (``clean-pair``): nothing to gate
    vals = [_attack_fact(r, "asr_no_defense") for r in per_trial.values()]
    vals = [0.0 if v is None or v != v else v for v in vals]
    mean = sum(vals) / len(vals) if vals else 0.0
    return mean if mean < min_asr else None


def _cells_note(metrics: list[str]) -> str:
    return "; cells: mean ± std over trials, n: number of trials" if len(metrics) > 3 else ""


def _metric_table(by_method: dict[str, list[Record]], methods: list[str], metrics: list[str],
                  paper: dict[tuple[str, str], PaperNumber], first: str
                  ) -> tuple[list[str], list[list], list[str]]:
    """Headers, rows and LaTeX headers of one metric table: with many metrics (compact), mean ±
    std per cell and one n column; otherwise mean ± std, 95% CI and n per metric; the paper's
    number beside a metric that has one."""
    compact = len(metrics) > 3  # many metrics: mean ± std per cell, one n column
    control = bool(metrics) and all(m.startswith(CONTROL_PREFIX) for m in metrics)
    with_paper = {m: bool(paper) and (not compact or any((m_, m) in paper for m_ in by_method)) for m in metrics}
    rows = []
    for method in methods:
        recs = by_method[method]
        if control:  # the control ran only where the method removed something
            recs = [r for r in recs if any(r.metric(m) is not None for m in metrics)]
            if not recs:
                continue
        row = [method]
        for metric in metrics:
            s = summarize([r.metric(metric) for r in recs])
            row += [s.fmt()] if compact else [s.fmt(), s.fmt_ci(), s.n]
            if with_paper[metric]:
                p = paper.get((method, metric))
                ours = summarize([r.metric(metric) for r in recs]).mean
                row.append("–" if p is None else f"{p.value:g} (ours − paper {ours - p.value:+.3g})"
                           if ours == ours else f"{p.value:g}")
        if compact:
            row.append(len(recs))
        rows.append(row)
    headers, tex = [first], [latex_escape(first)]
    for metric in metrics:
        name = metric.removeprefix(CONTROL_PREFIX) if control else metric
        up = higher_is_better(metric)
        arrow, tex_arrow = ("↑", r"$\uparrow$") if up else ("↓", r"$\downarrow$")
        tex_name = latex_metric_name(name)
        if compact:
            headers.append(f"{name} {arrow}")
            tex.append(f"{tex_name} {tex_arrow}")
        else:
            headers += [f"{name} {arrow} (mean ± std)", "95% CI", "n"]
            tex += [rf"{tex_name} {tex_arrow} (mean $\pm$ std)", r"95\% CI", "$n$"]
        if with_paper[metric]:
            headers.append(f"paper {name}")
            tex.append(f"paper {tex_name}")
    if compact:
        headers.append("n")
        tex.append("$n$")
    return headers, rows, tex


ATTACK_HEADING = "Attack success (no defense)"
_ATTACK_HEADERS = ["experiment", "scale", "trials", "poison ratio",
                   "ASR, mean over trials [95% t-CI] (pooled eligible targets)",
                   "clean acc. [95% t-CI] (pooled test inputs)", "train s/trial"]


def _attack_table(records: list[Record], suite_name: str | None = None) -> Table:
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
    suite = suite_name or records[0].suite
    return Table(f"{suite}: attack success with no defense, per experiment, scale and number of trials "
                 f"(mean over trials with a Student-t 95% interval; pooled counts in parentheses).",
                 "tab:" + _label(f"{suite}-attack-success"), list(_ATTACK_HEADERS), rows)


def _markdown_attack(table: Table, fmt: str) -> str:
    return f"### {ATTACK_HEADING}\n\n" + tabulate(table.rows, headers=table.headers, tablefmt=fmt) + "\n"


def render_attack_table(records: list[Record], fmt: str = "github", suite_name: str | None = None) -> str:
    """One row per (experiment, scale) of the attack-success protocol: poisoning ratio, attack
    success rate and clean accuracy as the mean over trials with a Student-t 95% interval over
    trials (the same test inputs are reused in every trial, so pooled inputs are not independent
    draws), the pooled counts behind them, and the training wall time.  ``fmt='latex'``: a
    ``booktabs`` table float."""
    table = _attack_table(records, suite_name)
    if fmt.startswith("latex"):
        return latex_table(table)
    return _markdown_attack(table, fmt)


# -- LaTeX -----------------------------------------------------------------------------------

_LATEX_ASCII = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
    "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": "$<$", ">": "$>$", "|": "$|$",  # OT1 fonts have no such glyphs in text
}
_LATEX_UNICODE = {
    "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$", "←": r"$\leftarrow$",
    "−": "-", "–": "--", "—": "---", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "≠": r"$\neq$",
    "≈": r"$\approx$", "·": r"$\cdot$", "…": r"\ldots{}", "‘": "`", "’": "'", "“": "``", "”": "''",
    "°": r"$^{\circ}$", "\u00a0": "~", "∞": r"$\infty$", "√": r"$\surd$", "µ": r"$\mu$", "ε": r"$\varepsilon$",
    **{ch: rf"$\{name}$" for ch, name in zip(
        "αβγδζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΥΦΨΩ",
        ("alpha beta gamma delta zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi "
         "chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega").split())},
    **{chr(0x2080 + d): f"$_{{{d}}}$" for d in range(10)},
    **{ch: f"$^{{{d}}}$" for ch, d in zip("⁰¹²³⁴⁵⁶⁷⁸⁹", range(10))},
}


def latex_escape(text: str) -> str:
    """Plain text -> LaTeX that typesets it with only the LaTeX kernel: the ten special characters
    escaped, ``<``, ``>``, ``|`` as math, common Unicode symbols (±, arrows, −, dashes, Greek,
    sub-/superscript digits) as their LaTeX commands, ``--`` kept as two hyphens; any other
    non-ASCII character is decomposed (é -> e) or, failing that, replaced by ``?``.  The result is
    pure ASCII."""
    import unicodedata

    text = str(text)
    out = []
    for i, ch in enumerate(text):
        if ch in _LATEX_ASCII:
            out.append(_LATEX_ASCII[ch])
        elif ch == "-" and text[i + 1 : i + 2] == "-":
            out.append("-{}")  # "--" would be an en dash
        elif ch.isascii():
            out.append(ch)
        elif ch in _LATEX_UNICODE:
            out.append(_LATEX_UNICODE[ch])
        else:
            plain = "".join(c for c in unicodedata.normalize("NFKD", ch) if c.isascii() and c.isprintable())
            out.append("".join(_LATEX_ASCII.get(c, c) for c in plain) if plain else "?")
    return "".join(out)


#: Column headers of the LaTeX tables (paper 000 Table 1's wording); others are the escaped name.
LATEX_METRIC_NAMES = {
    "auprc": "AUPRC",
    "target_rank": "target rank",
    "pct_adv_removed": r"\% $D_{\mathrm{adv}}$ removed",
    "pct_clean_removed": r"\% $D_{\mathrm{cl}}$ removed",
    "attack_success_rate": "ASR (target)",
    "asr_all_targets": "ASR (all targets)",
    "clean_accuracy": "clean acc.",
    "clean_accuracy_change": r"$\Delta$ clean acc.",
    "retrain_rounds": "retrain rounds",
    "asr_no_defense": "ASR (no defense)",
    "misclassification_rate": "misclass. rate",
}


def latex_metric_name(metric: str) -> str:
    base, at, setting = metric.partition("@")
    name = LATEX_METRIC_NAMES.get(base) or latex_escape(base)
    return f"{name} @ {latex_escape(setting)}" if at else name


def _label(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "table"


def _latex_cell(value) -> str:
    cell = latex_escape(value)
    return "{}" + cell if cell.startswith("[") else cell  # "\\ [" would read as \\[<length>]


def _booktabs_raw():
    """``tabulate``'s ``latex_booktabs`` rules with ``latex_raw``'s unescaped rows: cells come
    escaped by :func:`latex_escape`."""
    from tabulate import _table_formats

    raw = _table_formats["latex_raw"]
    return _table_formats["latex_booktabs"]._replace(headerrow=raw.headerrow, datarow=raw.datarow)


def latex_table(table: Table) -> str:
    """A ``table`` float: caption, label and a ``booktabs`` ``tabular``."""
    headers = table.latex_headers or [latex_escape(h) for h in table.headers]
    rows = [[_latex_cell(c) for c in row] for row in table.rows]
    body = tabulate(rows, headers=headers, tablefmt=_booktabs_raw(), disable_numparse=True,
                    colalign=("left",) + ("right",) * (len(headers) - 1))
    lines = [r"\begin{table}[!htbp]", r"\centering"]
    if len(headers) > 6:
        lines.append(r"\small\setlength{\tabcolsep}{4pt}")
    lines += [rf"\caption{{{latex_escape(table.caption)}}}", rf"\label{{{table.label}}}", body, r"\end{table}"]
    return "\n".join(lines)


def _paragraphs(text: str) -> list[str]:
    return [latex_escape(line.strip()) for line in text.splitlines() if line.strip()]


LATEX_PREAMBLE = r"""\documentclass{article}
\usepackage[margin=2cm]{geometry}
\usepackage{booktabs}
\begin{document}
"""
LATEX_END = "\\end{document}\n"
_FLOATS_PER_PAGE_FLUSH = 10  # standalone: \clearpage after this many tables (LaTeX holds at most 18)


def _latex_output(sections: list[Section], notes: list[str], standalone: bool) -> str:
    out: list[str] = []
    pending = 0
    for sec in sections:
        out.append(f"% {latex_escape(sec.heading)}")
        for text in sec.before:
            out += [*_paragraphs(text), ""]
        for t in sec.tables:
            out += [latex_table(t), ""]
        for text in sec.after:
            for par in _paragraphs(text):
                out += [par, ""]
        pending += len(sec.tables)
        if standalone and pending >= _FLOATS_PER_PAGE_FLUSH:
            out += [r"\clearpage", ""]
            pending = 0
    for note in notes:
        for par in _paragraphs(note):
            out += [par, ""]
    body = "\n".join(out).rstrip() + "\n"
    return LATEX_PREAMBLE + "\n" + body + "\n" + LATEX_END if standalone else body


#: Column order (Table 1 of paper 000 for mitigation); metrics not listed follow alphabetically,
#: those of one base metric at several settings (``m@1%``, ``m@5%``, ...) in numeric setting order.
METRIC_ORDER = (
    "auprc", "target_rank", "pct_adv_removed", "pct_clean_removed", "attack_success_rate",
    "asr_all_targets", "clean_accuracy", "clean_accuracy_change", "retrain_rounds",
    "control_pct_adv_removed", "control_pct_clean_removed", "control_attack_success_rate",
    "control_asr_all_targets", "control_clean_accuracy", "control_clean_accuracy_change",
)


def _metric_order(names: set[str]) -> list[str]:
    known = [m for m in METRIC_ORDER if m in names]
    return known + sorted((n for n in names if n not in METRIC_ORDER), key=_setting_key)


def _setting_key(name: str) -> tuple:
    """``m@10%`` after ``m@5%``: the base name, then the setting's leading number if it has one."""
    base, _, setting = name.partition("@")
    num = re.match(r"[-+]?\d*\.?\d+", setting)
    return (base, 0 if num else 1, float(num.group()) if num else 0.0, setting)


def _sort_key(recs: list[Record], metrics: list[str]) -> float:
    if not metrics:
        return 0.0
    m = metrics[0]
    s = summarize([r.metric(m) for r in recs])
    sign = -1.0 if higher_is_better(m) else 1.0
    return sign * s.mean if s.n else float("inf")


def _attack_fact(r: Record, name: str) -> float | None:
    """An attack-level fact of the trial (before any defense): the trial metric, else the metric
    (a protocol such as ``mitigation`` also records e.g. ``clean_accuracy`` after its removal)."""
    m = r.trial_metrics.get(name)
    if m is not None and isinstance(m.value, (int, float)):
        return float(m.value)
    return r.metric(name)


def _trial_line(recs: list[Record], failed_trials: list[int], why: str) -> str:
    per_trial = {r.trial: r for r in recs}
    parts = []
    for name in ("clean_accuracy", "asr_no_defense"):
        vals = [_attack_fact(r, name) for r in per_trial.values()]
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
        up = higher_is_better(metric)
        wins = sum((va[t] > vb[t]) if up else (va[t] < vb[t]) for t in common)
        lines.append(
            f"Paired difference {a} − {b} ({metric}): {d.mean:+.3f} "
            f"(95% CI {d.fmt_ci()}, n = {d.n}; {a} better ({'higher' if up else 'lower'}) in "
            f"{wins}/{len(common)} trials)"
        )
    return "\n".join(lines)


# -- figures ---------------------------------------------------------------------------------

PANEL_WIDTH_IN = 3.4  # one column of a two-column paper
PANEL_HEIGHT_IN = 2.8
MAX_PANELS_PER_ROW = 2  # at most 6.8 in wide: the text width of a two-column paper
FIGURE_DPI = 300


def _panels(records: list[Record], metric: str | None, order: list[str] | None) -> list[tuple[str, str, str, list]]:
    """(experiment, scale, metric, rows) per panel, in ``order``: ``metric``, or by default each
    experiment's first metric in :data:`METRIC_ORDER` (its headline; controls excluded)."""
    ok = [r for r in records if r.status == "ok"]
    rank = {name: i for i, name in enumerate(order or [])}
    panels = []
    groups = _group(ok)
    for experiment, scale in sorted(groups, key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1])):
        recs = groups[(experiment, scale)]
        names = [m for m in _metric_order({m for r in recs for m in r.metrics}) if not m.startswith(CONTROL_PREFIX)]
        m = metric or (names[0] if names else None)
        rows = [{"method": r.method, "value": r.metric(m)} for r in recs if m and r.metric(m) is not None]
        if rows:
            panels.append((experiment, scale, m, rows))
    return panels


def build_figure(records: list[Record], metric: str | None = None, order: list[str] | None = None):
    """A matplotlib figure: one strip + box plot panel per experiment/scale (seaborn), methods
    best first, panels of one metric on a shared y axis, :data:`PANEL_WIDTH_IN` wide each and at
    most :data:`MAX_PANELS_PER_ROW` in a row.  None when nothing has ``metric``."""
    disambiguated = disambiguate_labels([r for r in records if r.status == "ok"])
    panels = _panels(disambiguated, metric, order)
    if not panels:
        return None
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    ncols = min(MAX_PANELS_PER_ROW, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with plt.rc_context({"font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7}):
        fig, axes = plt.subplots(nrows, ncols, figsize=(PANEL_WIDTH_IN * ncols, PANEL_HEIGHT_IN * nrows),
                                 squeeze=False)
        first_of: dict[str, object] = {}
        flat = axes.ravel()
        for ax, (_, _, m, _) in zip(flat, panels):  # share before plotting: autoscale then sees all panels
            if m in first_of:
                ax.sharey(first_of[m])
            else:
                first_of[m] = ax
        for ax, (experiment, scale, m, rows) in zip(flat, panels):
            frame = pd.DataFrame(rows)
            try:
                best_high = higher_is_better(m)
            except KeyError:
                best_high = True
            means = frame.groupby("method")["value"].mean().sort_values(ascending=not best_high)
            methods = means.index.tolist()
            sns.boxplot(data=frame, x="method", y="value", order=methods, ax=ax, color="0.9", fliersize=0,
                        linewidth=0.6)
            sns.stripplot(data=frame, x="method", y="value", order=methods, ax=ax, size=2.5, alpha=0.8)
            ax.set_title(f"{experiment} ({scale})")
            ax.set_xlabel("")
            ax.set_ylabel(f"{m} {'↑' if best_high else '↓'}")
            ax.tick_params(axis="x", labelrotation=45)
            for lab in ax.get_xticklabels():
                lab.set_horizontalalignment("right")
                lab.set_rotation_mode("anchor")
        for ax in flat[len(panels):]:
            ax.set_visible(False)
        for ax in flat[: len(panels)]:
            ax.relim()
            ax.autoscale_view(scalex=False)
        fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` at :data:`FIGURE_DPI` (folders created) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)
    return path


def render_figure(records: list[Record], path: Path, metric: str | None = None,
                  order: list[str] | None = None) -> Path | None:
    """One PNG with a panel per experiment/scale (see :func:`build_figure`), two panels per row:
    3.4 in wide for one panel, 6.8 in for more, 2.8 in per row of panels, at 300 dpi."""
    fig = build_figure(records, metric, order)
    return save_figure(fig, Path(path)) if fig is not None else None


def render_figures(records: list[Record], path: Path, metric: str | None = None,
                   order: list[str] | None = None) -> list[Path]:
    """One single-panel PNG per experiment (3.4 x 2.8 in at 300 dpi): ``out.png`` ->
    ``out-<experiment>.png`` (``out-<experiment>-<scale>.png`` where the records hold several
    scales of it)."""
    from benchmark.store import slug

    path = Path(path)
    ok = [r for r in records if r.status == "ok"]
    scales: dict[str, set[str]] = defaultdict(set)
    for r in ok:
        scales[r.experiment].add(r.scale)
    written = []
    for experiment, scale, _, _ in _panels(disambiguate_labels(ok), metric, order):
        fig = build_figure([r for r in ok if r.experiment == experiment and r.scale == scale], metric)
        tag = experiment if len(scales[experiment]) == 1 else f"{experiment}-{scale}"
        written.append(save_figure(fig, path.with_name(f"{path.stem}-{slug(tag)}{path.suffix or '.png'}")))
    return written
