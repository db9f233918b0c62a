"""Render the ``paper`` suite's committed results: per entry a Markdown and a LaTeX file in the
layout of its table / figure, a figure, and the claims table, each headed by the command that
produced it; plus a compact export of the records they were rendered from.

    python -m benchmark.tools.render_paper --scale small --output-dir "$BENCHMARK_OUTPUT_DIR" \\
        --out results/paper

reads the run's records (``--output-dir``, as ``python -m benchmark run`` wrote them), exports
those of the suite's current definition to ``<out>/records/<scale>.jsonl`` and renders from that
export; ``--records <out>/records/<scale>.jsonl`` re-renders from a committed export alone.  With
both, the export's records are kept and the run's are added (a run's record replaces the export's
record of the same experiment, trial and method): results produced on different days extend one
export.  Stale records (another suite version or config hash than the suite resolves to now) are
left out of either source and counted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.paper_figures import render_density_figure, render_diagnostics_figures, render_filtering_figure
from benchmark.report import load_paper_numbers, render, render_figure
from benchmark.runner import current_of, current_records, get_suite
from benchmark.store import export_records, load_export, slug
from benchmark.tools import commands

TOOL = "python -m benchmark.tools.render_paper"


def _header_md(command: str, what: str) -> str:
    return (f"<!-- {what}; produced by: {command} -->\n\n"
            f"_{what}. Produced by `{command}`; numbers of the papers beside ours come from "
            f"`results/paper_numbers.json` (n/a: only in a figure)._\n\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=TOOL, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="paper")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--output-dir", help="the run's record store")
    ap.add_argument("--records", help="a compact export (<out>/records/<scale>.jsonl)")
    ap.add_argument("--out", default="results/paper")
    args = ap.parse_args(argv)
    argv = list(argv if argv is not None else sys.argv[1:])
    command = commands.command_line(TOOL, argv)
    suite = get_suite(args.suite)
    out = Path(args.out)
    export = out / "records" / f"{args.scale}.jsonl"
    if not (args.output_dir or args.records):
        ap.error("give --output-dir (a run's record store), --records (a compact export) or both")
    if args.output_dir:
        merged: dict[tuple, object] = {}
        stale = 0
        if args.records:
            kept, stale = current_of(suite, load_export(Path(args.records)), args.scale)
            merged.update({(r.experiment, r.trial, r.method): r for r in kept})
        recs, stale_run = current_records(suite, Path(args.output_dir), args.scale)
        merged.update({(r.experiment, r.trial, r.method): r for r in recs})
        n = export_records(list(merged.values()), export)
        print(f"exported {n} record(s) to {export} ({stale + stale_run} stale left out)", file=sys.stderr)
    else:
        export = Path(args.records)
    records = [r for r in load_export(export) if r.scale == args.scale]
    order = [e.name for e in suite.experiments]
    comparisons = {e.name: e.comparisons for e in suite.experiments}
    refs = {e.name: e.paper_reference for e in suite.experiments}
    written = []
    for entry in suite.entries:
        if not entry.experiments:
            continue
        recs = [r for r in records if r.experiment in entry.experiments]
        what = f"paper {entry.paper} {entry.ref} ({entry.id}): {entry.title}; suite {suite.name} v{suite.version}, scale {args.scale}"
        exp_set = set(entry.experiments)
        claims = tuple(c for c in suite.claims if any(ch.experiment in exp_set for ch in c.checks))
        claims = tuple(type(c)(c.id, c.text, c.where, tuple(ch for ch in c.checks if ch.experiment in exp_set))
                       for c in claims)
        if not recs:
            body = "No records at this scale: " + "; ".join(
                f"{e}: {suite.experiment(e).not_run[args.scale].describe()}" if args.scale in suite.experiment(e).not_run
                else f"{e}: not run yet" for e in entry.experiments) + "\n"
            md = _header_md(command, what) + body
            tex = f"% {what}; produced by: {command}\n% {body}"
        else:
            notes = _methods_not_run(entry, args.scale)
            md = _header_md(command, what) + render(recs, suite.name, comparisons=comparisons, order=order,
                                                    min_asr=suite.min_asr, claims=claims, references=refs,
                                                    notes=notes)
            tex = f"% {what}\n% produced by: {command}\n" + render(
                recs, suite.name, fmt="latex", comparisons=comparisons, order=order, min_asr=suite.min_asr,
                claims=claims, standalone=True, references=refs)
        stem = out / f"{slug(entry.id)}-{args.scale}"
        stem.with_suffix(".md").write_text(md)
        stem.with_suffix(".tex").write_text(tex)
        written += [stem.with_suffix(".md"), stem.with_suffix(".tex")]
        if entry.id == "000-fig2-3":
            written += render_diagnostics_figures(recs, stem)
            continue
        fig = (render_density_figure(recs, stem.with_suffix(".png")) if entry.id == "000-fig5"
               else render_filtering_figure(recs, stem.with_suffix(".png")) if entry.id == "000-fig4"
               else render_figure(recs, stem.with_suffix(".png"), order=order) if recs else None)
        if fig is not None:
            written.append(fig)
    claims_md = out / f"claims-{args.scale}.md"
    claims_md.write_text(_header_md(command, f"the papers' claims, suite {suite.name} v{suite.version}, scale {args.scale}")
                         + _claims_only(records, suite))
    written.append(claims_md)
    for p in written:
        print(p, file=sys.stderr)
    return 0


def _methods_not_run(entry, scale: str) -> list[str]:
    """One note per paper column that the entry does not run, with the paper's numbers for it."""
    paper = load_paper_numbers()
    out = []
    for method, why in entry.methods_not_run:
        nums = [f"{p.experiment} {p.metric} {p.value:g}" for p in paper
                if p.method == method and p.experiment in entry.experiments]
        out.append(f"**{method}: not run at scale {scale}** ({why})."
                   + (f" The paper's numbers: {'; '.join(nums)}." if nums else ""))
    return out


def _claims_only(records, suite) -> str:
    text = render(records, suite.name, min_asr=suite.min_asr, claims=suite.claims)
    i = text.find(f"### {suite.name}: the papers' claims")
    return text[i:] if i >= 0 else "No records to test the claims on.\n"


if __name__ == "__main__":
    raise SystemExit(main())
