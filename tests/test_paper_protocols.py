"""The paper suite's figure protocols -- influence-density (paper 000 Fig. 5) and
training-diagnostics (Figs. 2-3) -- their figures, the compact record export and the renderer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.config import ours
from benchmark.methods import build_method
from benchmark.paper_figures import render_density_figure, render_diagnostics_figures
from benchmark.experiment import Entry, Experiment, MethodSpec, Suite
from benchmark.protocols.influence_density import upper_tail
from benchmark.registry import protocols, suites
from benchmark.runner import RunOptions, current_records, get_suite, run_suite
from benchmark.store import export_records, load_export
from benchmark.suites.quick import BACKDOOR_TOY_ATTACK, TOY_CONFIG
from benchmark.tools import render_paper

SUITE = "test-density-tiny"


@suites.register(SUITE, "tiny suite for the influence-density tests")
def _tiny() -> Suite:
    cfg = {**TOY_CONFIG, "attack": BACKDOOR_TOY_ATTACK,
           "train": {**TOY_CONFIG["train"], "epochs": ours(4), "checkpoints_per_epoch": ours(1)},
           "protocol": {"name": "influence-density", "params": {"kappa": 3}}, "trials": ours(1)}
    exp = Experiment(name="density", description="tiny", config=cfg, methods=(MethodSpec("GAS", "gas"),),
                     paper_reference="paper 000 Fig. 5")
    return Suite(name=SUITE, version=1, description="tiny", experiments=(exp,),
                 entries=(Entry("000-fig5", "000", "Fig. 5", "densities", ("density",)),))


def test_upper_tail_is_the_kappa_th_largest():
    s = np.array([0.0, 5.0, 1.0, 3.0, 2.0])
    assert upper_tail(s, 1) == 5.0 and upper_tail(s, 2) == 3.0
    with pytest.raises(ValueError, match="kappa"):
        upper_tail(s, 6)


@pytest.fixture(scope="module")
def density_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("density")
    opts = RunOptions(scale="small", cache_dir=root / "cache", output_dir=root / "runs", progress=False)
    run_suite(get_suite(SUITE), opts, log=lambda _m: None)
    recs, _ = current_records(get_suite(SUITE), root / "runs")
    return root, recs


def test_density_records_hold_robust_normal_and_histograms(density_run, one_thread):
    _, recs = density_run
    (r,) = [x for x in recs if x.status == "ok"]
    for q in ("target", "non_target"):
        d = r.extra[q]
        assert sum(d["hist_counts"]) == d["n_stats"] and len(d["hist_edges"]) == len(d["hist_counts"]) + 1
        assert d["hist_edges"][0] <= d["median"] <= d["hist_edges"][-1] and d["qn"] > 0
    assert r.metric("upper_tail_gap") == pytest.approx(r.metric("upper_tail_target") - r.metric("upper_tail_non_target"))
    assert r.extra["target"]["adv_values"], "the target's y_hat is y_adv: D_adv is in its statistics group"


def test_export_roundtrip_and_renderer(density_run, tmp_path):
    root, recs = density_run
    path = tmp_path / "small.jsonl"
    assert export_records(recs, path) == len(recs)
    back = load_export(path)
    assert [(r.experiment, r.method, r.metrics) for r in back] == [(r.experiment, r.method, r.metrics) for r in recs]
    assert all(r.config == {} for r in back)
    assert "/" not in "".join(str(v) for r in back for v in r.data_source.values() if isinstance(v, str)
                              and v.startswith("/")), "machine paths left in the export"
    fig = render_density_figure(back, tmp_path / "fig5.png")
    assert fig is not None and fig.stat().st_size > 10_000
    out = tmp_path / "paper"
    assert render_paper.main(["--suite", SUITE, "--scale", "small", "--output-dir", str(root / "runs"),
                              "--out", str(out)]) == 0
    md = (out / "000-fig5-small.md").read_text()
    assert md.startswith("<!-- paper 000 Fig. 5") and "produced by: python -m benchmark.tools.render_paper" in md
    assert "upper_tail_gap" in md and "Paper's numbers: n/a" in md
    assert (out / "000-fig5-small.png").is_file() and (out / "records" / "small.jsonl").is_file()
    assert "\\begin{document}" in (out / "000-fig5-small.tex").read_text()
    with pytest.raises(ValueError, match="not an exported record"):
        (tmp_path / "bad.jsonl").write_text('{"suite": 1}\n')
        load_export(tmp_path / "bad.jsonl")
    assert Path(fig).suffix == ".png"


DIAG = "test-diagnostics-tiny"


@suites.register(DIAG, "tiny suite for the training-diagnostics tests")
def _tiny_diag() -> Suite:
    cfg = {**TOY_CONFIG, "attack": BACKDOOR_TOY_ATTACK,
           "train": {**TOY_CONFIG["train"], "epochs": ours(3), "checkpoints_per_epoch": ours(2)},
           "protocol": {"name": "training-diagnostics", "params": {"max_clean": 50}}, "trials": ours(2)}
    exp = Experiment(name="diag", description="tiny", config=cfg, methods=(MethodSpec("no defense", "none"),))
    return Suite(name=DIAG, version=1, description="tiny", experiments=(exp,),
                 entries=(Entry("000-fig2-3", "000", "Figs. 2-3", "diagnostics", ("diag",)),))


def test_training_diagnostics_records_draw_figs_2_and_3(tmp_path, one_thread):
    opts = RunOptions(scale="small", cache_dir=tmp_path / "cache", output_dir=tmp_path / "runs", progress=False)
    run_suite(get_suite(DIAG), opts, log=lambda _m: None)
    recs, _ = current_records(get_suite(DIAG), tmp_path / "runs")
    assert len(recs) == 2 and all(r.status == "ok" and r.metrics == {} for r in recs)
    lt, ls = recs[0].extra["loss_tracking"], recs[0].extra["layer_split"]
    assert len(lt["iterations"]) == 3 * 2 + 1 and lt["n_adv"] >= 1 and lt["n_cl"] == 50
    frac = np.asarray(ls["sq_fraction"])
    assert np.allclose(np.nansum(frac, axis=1), 1.0)
    paths = render_diagnostics_figures(recs, tmp_path / "figs" / "e")
    assert [p.name for p in paths] == ["e-diag.png", "e-fig3.png"] and all(p.stat().st_size > 10_000 for p in paths)
    with pytest.raises(Exception, match="scores nothing"):
        protocols.get("training-diagnostics")().check_method(build_method(MethodSpec("GAS", "gas")))


def _filter_rec(method, trial, rates):
    from types import SimpleNamespace

    return SimpleNamespace(protocol="filtering", status="ok", method=method, trial=trial, experiment="fig4",
                           metrics={f"misclassification_rate@{p:g}%": SimpleNamespace(value=v) for p, v in rates.items()})


def test_filtering_curves_and_fig4_figure(tmp_path):
    from benchmark.paper_figures import filtering_curves, render_filtering_figure

    recs = [_filter_rec("GAS", t, {1: 0.5, 10: 1.0}) for t in range(2)] + [
        _filter_rec("Random", 0, {1: 0.0, 10: 0.5}), _filter_rec("Influence Func.", 0, {1: 0.0, 10: 0.0})]
    curves = filtering_curves(recs)
    assert curves == {"GAS": {1.0: [0.5, 0.5], 10.0: [1.0, 1.0]}, "Random": {1.0: [0.0], 10.0: [0.5]},
                      "Influence Func.": {1.0: [0.0], 10.0: [0.0]}}
    fig = render_filtering_figure(recs, tmp_path / "fig4.png")
    assert fig is not None and fig.stat().st_size > 10_000
    assert render_filtering_figure([], tmp_path / "none.png") is None


def test_render_merges_a_committed_export_with_a_new_run(density_run, tmp_path):
    root, recs = density_run
    earlier = tmp_path / "earlier.jsonl"
    export_records(recs, earlier)
    out = tmp_path / "paper"
    empty = tmp_path / "empty-run"
    empty.mkdir()
    # a new run that holds nothing yet keeps every committed record
    assert render_paper.main(["--suite", SUITE, "--scale", "small", "--records", str(earlier),
                              "--output-dir", str(empty), "--out", str(out)]) == 0
    assert len(load_export(out / "records" / "small.jsonl")) == len(recs)
    # the same records in both sources are not doubled
    assert render_paper.main(["--suite", SUITE, "--scale", "small", "--records", str(earlier),
                              "--output-dir", str(root / "runs"), "--out", str(out)]) == 0
    assert len(load_export(out / "records" / "small.jsonl")) == len(recs)
