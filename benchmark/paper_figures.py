"""Figures of paper 000 drawn from records (``python -m benchmark.tools.render_paper``):

* Fig. 5 from ``influence-density`` records: per experiment, the density of one method's influence
  values for a target and a non-target (over the training examples labelled with the query's
  predicted label), each with its robust normal N(median, Q_n^2) and the D_adv values as a rug;
* Fig. 4 from ``filtering`` records: z_filt's misclassification rate against the percentage of
  training data removed, one line per method with its 95 % t-interval over trials, in the paper's
  two panels (influence functions | TracIn family, random removal in both);
* Figs. 2 and 3 from ``training-diagnostics`` records, through :mod:`benchmark.diagnostics`'
  own plots: Fig. 2 for one trial, Fig. 3 with the layer shares averaged over the trials (as the
  paper averages over its trials).
"""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmark import diagnostics as dg
from benchmark.metrics import summarize
from benchmark.report import PANEL_HEIGHT_IN, PANEL_WIDTH_IN, save_figure
from benchmark.store import Record

PROTOCOL = "influence-density"
QUERIES = (("target", "target", "C3"), ("non_target", "non-target", "C0"))


def density_records(records: list[Record], method: str, trial: int = 0) -> list[Record]:
    """``method``'s influence-density records of trial ``trial``, one per experiment/scale."""
    return [r for r in records if r.protocol == PROTOCOL and r.status == "ok" and r.method == method
            and r.trial == trial]


def render_density_figure(records: list[Record], path: Path, method: str = "GAS", trial: int = 0) -> Path | None:
    """One panel pair (target | non-target) per experiment, 3.4 in per panel, 300 dpi; None when
    the records hold no ``method`` densities."""
    recs = density_records(records, method, trial)
    if not recs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7}):
        fig, axes = plt.subplots(len(recs), 2, figsize=(2 * PANEL_WIDTH_IN, PANEL_HEIGHT_IN * len(recs)),
                                 squeeze=False)
        for row, r in zip(axes, recs):
            for ax, (key, name, colour) in zip(row, QUERIES):
                d = r.extra[key]
                edges, counts = np.asarray(d["hist_edges"]), np.asarray(d["hist_counts"], dtype=float)
                width = np.diff(edges)
                dens = counts / max(counts.sum(), 1) / np.where(width > 0, width, 1)
                ax.stairs(dens, edges, color=colour, fill=True, alpha=0.35, label=f"{name} (y_hat = {d['predicted_label']})")
                mu, q = float(d["median"]), float(d["qn"])
                if q > 0 and math.isfinite(q):
                    xs = np.linspace(edges[0], edges[-1], 400)
                    ax.plot(xs, np.exp(-0.5 * ((xs - mu) / q) ** 2) / (q * math.sqrt(2 * math.pi)), color="k",
                            lw=0.8, label="N(median, Q_n)")
                adv = d.get("adv_values") or []
                if adv:
                    ax.plot(adv, np.zeros(len(adv)), "|", color="C3", ms=8, mew=0.8, label=f"D_adv ({len(adv)})")
                tail = r.metric(f"upper_tail_{key}")
                ax.set_title(f"{r.experiment} ({r.scale}), {name}\n{r.method}: upper tail σ = {tail:.1f}")
                ax.set_xlabel(f"{r.method} influence")
                ax.set_ylabel("density")
                ax.legend(frameon=False, fontsize=6)
        fig.tight_layout()
        return save_figure(fig, Path(path))


DIAGNOSTICS = "training-diagnostics"


def _view(d: dict, **arrays) -> SimpleNamespace:
    """A stored diagnostics dict as the attribute view :mod:`benchmark.diagnostics`' plots read."""
    v = SimpleNamespace(**{k: (np.array([np.nan if x is None else x for x in d[k]], dtype=float)
                               if k in arrays else d[k]) for k in d})
    v.epochs = np.asarray(d["iterations"], dtype=float) / (d.get("steps_per_epoch") or 1.0)
    return v


def render_diagnostics_figures(records: list[Record], stem: Path) -> list[Path]:
    """``<stem>-<experiment>.png`` (the first trial's loss tracking) and ``<stem>-fig3.png`` (every
    experiment's target layer shares, averaged over trials) from training-diagnostics records."""
    recs = sorted((r for r in records if r.protocol == DIAGNOSTICS and r.status == "ok"),
                  key=lambda r: (r.experiment, r.trial))
    out: list[Path] = []
    for r in recs:
        lt = r.extra.get("loss_tracking")
        if lt is not None and r.trial == min(x.trial for x in recs if x.experiment == r.experiment):
            keys = ("adv_loss_median", "adv_loss_q25", "adv_loss_q75", "cl_loss_median", "cl_loss_q25",
                    "cl_loss_q75", "gnr")
            out.append(dg.plot_loss_tracking(_view(lt, **dict.fromkeys(keys)),
                                             Path(f"{stem}-{r.experiment}.png")))
    splits, labels = [], []
    for exp in dict.fromkeys(r.experiment for r in recs):
        ds = [r.extra["layer_split"] for r in recs if r.experiment == exp and "layer_split" in r.extra]
        if not ds:
            continue
        view = _view(ds[0])
        view.sq_fraction = np.nanmean(np.stack([np.asarray(d["sq_fraction"], dtype=float) for d in ds]), axis=0)
        view.param_fraction = np.asarray(ds[0]["param_fraction"], dtype=float)
        view.parts = SimpleNamespace(first_module=ds[0]["first_module"], last_module=ds[0]["last_module"])
        splits.append(view)
        labels.append(f"{exp} (mean of {len(ds)} trials)")
    if splits:
        out.append(dg.plot_layer_split(splits, labels, Path(f"{stem}-fig3.png")))
    return out



FILTERING = "filtering"
FILTER_METRIC = "misclassification_rate@"
#: Fig. 4's panels: methods whose label starts with one of the prefixes (random removal in both).
FILTER_PANELS = (("influence functions", ("Influence Func.", "Rn. Influence Func.", "Influence Func.-L")),
                 ("TracIn family", ("TracIn", "Rn. TracIn", "TracIn-L", "TracInCP", "GAS", "GAS-L")))


def filtering_curves(records: list[Record]) -> dict[str, dict[float, list[float]]]:
    """method -> removal percentage -> per-trial misclassification rates (``top-percent`` rules)."""
    out: dict[str, dict[float, list[float]]] = {}
    for r in sorted((r for r in records if r.protocol == FILTERING and r.status == "ok"), key=lambda r: r.trial):
        for name, m in r.metrics.items():
            if name.startswith(FILTER_METRIC) and name.endswith("%"):
                pct = float(name[len(FILTER_METRIC):-1])
                out.setdefault(r.method, {}).setdefault(pct, []).append(float(m.value))
    return out


def render_filtering_figure(records: list[Record], path: Path) -> Path | None:
    """Fig. 4's layout: two panels side by side, 3.4 in each, 300 dpi; None without filtering records."""
    curves = filtering_curves(records)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = sorted({r.experiment for r in records if r.protocol == FILTERING})
    with plt.rc_context({"font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7}):
        fig, axes = plt.subplots(1, 2, figsize=(2 * PANEL_WIDTH_IN, PANEL_HEIGHT_IN), sharey=True, squeeze=False)
        for ax, (title, members) in zip(axes[0], FILTER_PANELS):
            shown = [m for m in members if m in curves] + [m for m in curves if m.lower().startswith("random")]
            for k, method in enumerate(shown):
                xs = sorted(curves[method])
                sums = [summarize(curves[method][x]) for x in xs]
                ys = np.array([s.mean for s in sums])
                lo = np.array([s.ci_low if s.n > 1 else s.mean for s in sums])
                hi = np.array([s.ci_high if s.n > 1 else s.mean for s in sums])
                style = {"color": "0.4", "ls": "--"} if method.lower().startswith("random") else {"color": f"C{k}"}
                ax.plot(xs, ys, marker="o", ms=2.5, lw=1, label=method, **style)
                ax.fill_between(xs, np.clip(lo, 0, 1), np.clip(hi, 0, 1), alpha=0.15, color=style["color"], lw=0)
            n = max((len(v) for c in curves.values() for v in c.values()), default=0)
            ax.set_title(f"{title} ({', '.join(exps)}; {n} trials)", fontsize=6)
            ax.set_xlabel("training data removed (%)")
            ax.set_ylabel("z_filt misclassification rate")
            ax.set_ylim(-0.02, 1.02)
            ax.legend(frameon=False, fontsize=6)
        fig.tight_layout()
        return save_figure(fig, Path(path))
