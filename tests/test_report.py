"""The rendered report: the mitigation control in its own table, suite order, LaTeX that compiles
as-is (booktabs, captions, escaping) and figures sized for a paper column.  Records are built by
hand; nothing here runs a suite."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.metrics import higher_is_better
from benchmark.report import (FIGURE_DPI, _comparison_line, PANEL_HEIGHT_IN, PANEL_WIDTH_IN, build_figure, latex_escape, render,
                              render_figure, render_figures)
from benchmark.store import MetricValue, Record, RecordStore

OWN = {"pct_adv_removed": 90.0, "pct_clean_removed": 0.5, "attack_success_rate": 0.0, "asr_all_targets": 0.1,
       "clean_accuracy": 0.93, "clean_accuracy_change": -0.02, "retrain_rounds": 2.0}
CONTROL = {"control_pct_adv_removed": 1.0, "control_pct_clean_removed": 0.6, "control_attack_success_rate": 1.0,
           "control_asr_all_targets": 0.9, "control_clean_accuracy": 0.94, "control_clean_accuracy_change": -0.01}
NASTY = "x_y & 50% #1 {a} ~^\\ <b> |κ ε − – ± é 中"


def _record(experiment: str, method: str, trial: int, metrics: dict[str, float], protocol: str = "adversarial-set",
            scale: str = "small", suite: str = "s", suite_version: int = 1, config_hash: str = "h") -> Record:
    return Record(suite=suite, suite_version=suite_version, experiment=experiment, scale=scale, trial=trial,
                  seed=trial, config={}, config_hash=config_hash, data_fingerprint="d", protocol=protocol,
                  method=method, method_kind="defenses", method_name=method.lower(), method_params={},
                  method_hash="m", granted=[], oracle=[],
                  metrics={k: MetricValue(v, higher_is_better(k)) for k, v in metrics.items()},
                  trial_metrics={"clean_accuracy": MetricValue(0.95, True), "asr_no_defense": MetricValue(1.0, True)},
                  score_hash=None, wall_time_s=0.0)


def _mitigation(method: str = "GAS", trials: int = 3, **kw) -> list[Record]:
    out = []
    for t in range(trials):
        ctl = CONTROL if t < 2 else {}  # the control runs only where the method removed something
        out.append(_record("mitigation", method, t, {**OWN, **{k: v + 0.001 * t for k, v in ctl.items()}},
                           protocol="mitigation", **kw))
    return out


def _tables(markdown: str) -> list[list[str]]:
    """The Markdown tables of a report, as lists of lines."""
    tables, cur = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


def test_mitigation_control_is_a_table_of_its_own_in_table_1_order():
    md = render(_mitigation("GAS") + _mitigation("GAS-L"), "s", paper_numbers=[])
    main_t, control_t = _tables(md)
    assert _cells(main_t[0]) == ["method", "pct_adv_removed ↑", "pct_clean_removed ↓", "attack_success_rate ↓",
                                 "asr_all_targets ↓", "clean_accuracy ↑", "clean_accuracy_change ↑",
                                 "retrain_rounds ↓", "n"]
    assert _cells(control_t[0]) == ["matched to", "pct_adv_removed ↑", "pct_clean_removed ↓",
                                    "attack_success_rate ↓", "asr_all_targets ↓", "clean_accuracy ↑",
                                    "clean_accuracy_change ↑", "n"]
    assert "control_" not in md
    assert "Random-removal control (same number of examples removed as the method in each row):" in md
    assert md.index("Random-removal control") < md.index(control_t[0])
    gas = next(_cells(r) for r in control_t[2:] if _cells(r)[0] == "GAS")
    assert gas[1] == "1.000 ± 0.001" and gas[-1] == "2"  # two trials had a control
    assert {_cells(r)[0] for r in control_t[2:]} == {"GAS", "GAS-L"}
    assert _cells(next(r for r in main_t[2:] if _cells(r)[0] == "GAS"))[-1] == "3"
    # the attack line is the attack's, not the clean accuracy after the defense's removal
    assert "Attack: clean_accuracy 0.950 ± 0.000" in md


def test_experiments_print_in_suite_order_then_alphabetically():
    recs = [_record(e, "GAS", t, {"auprc": 0.5}) for e in ("alpha", "zulu", "mike", "bravo") for t in range(2)]
    md = render(recs, "s", order=["zulu", "mike"], paper_numbers=[])
    heads = re.findall(r"^### s / (\w+)", md, flags=re.M)
    assert heads == ["zulu", "mike", "alpha", "bravo"]
    tex = render(recs, "s", fmt="latex", order=["zulu", "mike"], paper_numbers=[])
    assert re.findall(r"\\caption\{s / (\w+)", tex) == heads


def test_latex_escape_specials_and_unicode():
    assert latex_escape("a_b%c&d#e$f{g}h~i^j\\k") == (
        r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
    assert latex_escape("0.9 ± 0.1 ↑↓") == r"0.9 $\pm$ 0.1 $\uparrow$$\downarrow$"
    assert latex_escape("GAS − TracInCP") == "GAS - TracInCP"
    assert latex_escape("κ=1, ε=0.03") == r"$\kappa$=1, $\varepsilon$=0.03"
    assert latex_escape("1–2") == "1--2"
    assert latex_escape("--suite") == "-{}-suite"  # two ASCII hyphens stay two hyphens
    assert latex_escape("café 中 θ₀") == r"cafe ? $\theta$$_{0}$"
    assert latex_escape("a<b>c|d") == "a$<$b$>$c$|$d"
    assert latex_escape(NASTY).isascii()


_ALLOWED_COMMANDS = {
    "documentclass", "usepackage", "begin", "end", "centering", "small", "setlength", "tabcolsep", "caption",
    "label", "toprule", "midrule", "bottomrule", "clearpage", "textbackslash", "textasciitilde",
    "textasciicircum", "pm", "uparrow", "downarrow", "kappa", "varepsilon", "mathrm", "Delta", "ldots",
}


def _check_latex(tex: str) -> None:
    """What a TeX engine would reject, checked without one: non-ASCII input, unbalanced
    environments / braces / math, unescaped specials in text, commands outside the LaTeX kernel
    and booktabs."""
    assert tex.isascii(), sorted({c for c in tex if not c.isascii()})
    assert "###" not in tex and "|--" not in tex  # no Markdown left
    body = "\n".join(re.sub(r"(?<!\\)%.*$", "", line) for line in tex.splitlines())  # drop comments
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", body):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"\\end{{{env}}} does not close the open environment"
    assert not stack, f"unclosed environments {stack}"
    depth, i = 0, 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            i += 2  # an escaped character or the first letter of a command
            continue
        depth += (c == "{") - (c == "}")
        assert depth >= 0, f"unbalanced '}}' near {body[max(0, i - 40):i + 1]!r}"
        i += 1
    assert depth == 0
    for par in re.split(r"\n\s*\n", body):
        plain = par.replace(r"\$", "")
        assert plain.count("$") % 2 == 0, f"unbalanced math in {par!r}"
        text = "".join(plain.split("$")[::2])  # outside math
        assert not re.search(r"(?<!\\)[_^#]", text), f"unescaped special in {par!r}"
    assert set(re.findall(r"\\([A-Za-z]+)", body)) <= _ALLOWED_COMMANDS


def _latex_report(standalone: bool) -> str:
    recs = (_mitigation("GAS") + _mitigation(NASTY)
            + [_record("inverted-digit", m, t, {"auprc": 0.5 + 0.1 * t}) for m in ("GAS", "TracInCP")
               for t in range(3)])
    return render(recs, "s", fmt="latex", standalone=standalone, order=["inverted-digit", "mitigation"],
                  comparisons={"inverted-digit": (("GAS", "TracInCP"),)}, paper_numbers=[],
                  notes=["(2 stored record(s) of suite 's' left out)"])


def test_latex_is_booktabs_tables_with_captions_ascii_and_balanced():
    for standalone in (False, True):
        tex = _latex_report(standalone)
        _check_latex(tex)
        assert tex.startswith(r"\documentclass{article}") == standalone
        assert tex.rstrip().endswith(r"\end{document}") == standalone
        assert tex.count(r"\begin{table}") == tex.count(r"\caption{") == 3
        for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
            assert tex.count(rule) == 3
        assert r"\caption{s / mitigation (scale: small, 3 trials)" in tex
        assert r"\caption{s / mitigation: random-removal control" in tex
        assert r"\caption{s / inverted-digit (scale: small, 3 trials).}" in tex
        assert latex_escape(NASTY) in tex  # every text cell escaped
        assert r"\hline" not in tex
        assert r"Paired difference GAS - TracInCP (auprc): +0.000" in tex  # a paragraph, escaped
        assert r"\% $D_{\mathrm{adv}}$ removed $\uparrow$" in tex  # Table 1's headers


def test_latex_attack_only_and_empty_reports_are_valid():
    rec = _record("a", "none", 0, {"asr_no_defense": 0.9, "clean_accuracy": 0.9}, protocol="attack-success")
    rec.extra = {"asr_counts": [9, 10], "clean_counts": [90, 100], "poison_ratio": 0.01, "training_wall_time_s": 1.0}
    for recs in ([rec], []):
        tex = render(recs, "my_suite", fmt="latex", standalone=True, paper_numbers=[])
        _check_latex(tex)
    assert r"No records for suite 'my\_suite' yet" in tex


def _tex_missing() -> str | None:
    """Why the LaTeX compile test cannot run here (None: it can)."""
    if (shutil.which("pdflatex") or shutil.which("latex")) is None:
        return ("no TeX engine (pdflatex / latex) on PATH, e.g. Debian's texlive-latex-base + "
                "texlive-latex-recommended (booktabs)")
    kpse = shutil.which("kpsewhich")
    if kpse:
        for sty in ("booktabs.sty", "geometry.sty"):
            if not subprocess.run([kpse, sty], capture_output=True, text=True).stdout.strip():
                return f"the TeX installation has no {sty} (Debian: texlive-latex-recommended)"
    return None


@pytest.mark.skipif(_tex_missing() is not None, reason=str(_tex_missing()))
def test_standalone_latex_compiles(tmp_path):
    engine = shutil.which("pdflatex") or shutil.which("latex")
    (tmp_path / "report.tex").write_text(_latex_report(standalone=True))
    proc = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "report.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "Missing character" not in log


def _png(path: Path) -> tuple[tuple[int, int], float]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size, float(im.info["dpi"][0])


def _figure_records() -> list[Record]:
    recs = [_record(e, m, t, {"auprc": base + 0.01 * t}) for e, pairs in
            (("inverted-digit", (("GAS", 0.9), ("TracInCP", 0.7))), ("target-identification", (("FIT", 0.9),
                                                                                              ("Random", 0.1))))
            for m, base in pairs for t in range(3)]
    return recs + _mitigation("GAS")


def test_figure_is_sized_for_a_paper_column(tmp_path):
    recs = _figure_records()
    path = render_figure(recs, tmp_path / "fig.png")
    (w, h), dpi = _png(path)
    assert dpi == pytest.approx(FIGURE_DPI, rel=1e-3)
    assert (w, h) == (round(2 * PANEL_WIDTH_IN * FIGURE_DPI), round(2 * PANEL_HEIGHT_IN * FIGURE_DPI))  # 3 panels
    assert 3.3 <= PANEL_WIDTH_IN <= 3.5 and w / dpi <= 7.0
    paths = render_figures(recs, tmp_path / "out.png", order=["mitigation"])
    assert [p.name for p in paths] == ["out-mitigation.png", "out-inverted-digit.png",
                                       "out-target-identification.png"]
    for p in paths:
        (w, h), dpi = _png(p)
        assert (w / dpi, h / dpi) == (pytest.approx(PANEL_WIDTH_IN, abs=0.01), pytest.approx(PANEL_HEIGHT_IN, abs=0.01))
    one = render_figure(recs[:6], tmp_path / "one.png")  # one experiment: one column wide
    assert _png(one)[0] == (round(PANEL_WIDTH_IN * FIGURE_DPI), round(PANEL_HEIGHT_IN * FIGURE_DPI))


def test_figure_panels_of_one_metric_share_the_y_axis():
    fig = build_figure(_figure_records(), order=["inverted-digit", "target-identification", "mitigation"])
    auprc_a, auprc_b, mitigation = fig.axes[:3]
    assert auprc_a.get_shared_y_axes().joined(auprc_a, auprc_b)
    assert not auprc_a.get_shared_y_axes().joined(auprc_a, mitigation)
    low, high = auprc_a.get_ylim()
    assert low <= 0.1 and high >= 0.92  # both panels' data are in view
    assert auprc_a.get_ylabel().startswith("auprc") and mitigation.get_ylabel().startswith("pct_adv_removed")
    import matplotlib.pyplot as plt

    plt.close(fig)


def _store_quick_records(root: Path) -> None:
    from benchmark.runner import get_suite

    suite = get_suite("quick")
    store = RecordStore(root)
    for name, recs in (("mitigation", _mitigation("GAS")),
                       ("inverted-digit", [_record("inverted-digit", m, t, {"auprc": 0.5 + 0.1 * t})
                                           for m in ("GAS", "TracInCP") for t in range(3)])):
        exp = suite.experiment(name)
        for r in recs:
            r.suite, r.suite_version, r.scale = suite.name, suite.version, "smoke"
            r.config_hash = exp.resolve("smoke", r.trial, suite.seed).hash
            store.write(r)


def test_cli_report_latex_standalone_and_one_figure_per_experiment(tmp_path, capsys):
    _store_quick_records(tmp_path / "runs")
    fig = tmp_path / "fig" / "out.png"
    assert main(["report", "--output-dir", str(tmp_path / "runs"), "--format", "latex", "--standalone",
                 "--figure", str(fig), "--figure-per-experiment"]) == 0
    captured = capsys.readouterr()
    tex = captured.out
    _check_latex(tex)
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert tex.index("quick / inverted-digit") < tex.index("quick / mitigation")  # suite order
    assert "random-removal control" in tex and "figure written" in captured.err
    assert not fig.exists()
    size = (round(PANEL_WIDTH_IN * FIGURE_DPI), round(PANEL_HEIGHT_IN * FIGURE_DPI))
    assert all(_png(fig.with_name(f"out-{e}.png"))[0] == size for e in ("inverted-digit", "mitigation"))
    assert main(["report", "--output-dir", str(tmp_path / "runs")]) == 0
    md = capsys.readouterr().out
    assert "Random-removal control" in md and "control_" not in md
    assert main(["report", "--output-dir", str(tmp_path / "runs"), "--standalone"]) == 2
    assert "--standalone needs --format latex" in capsys.readouterr().err


def test_paired_difference_line_counts_wins_in_the_metric_direction():
    """A lower-is-better metric (target rank) counts the trials where A is lower as A's wins
    (the line used to say 'A higher in k/n' for every metric)."""
    def rec(method, trial, rank):
        return Record(suite="s", suite_version=1, experiment="e", scale="small", trial=trial, seed=trial, config={},
                      config_hash="h", data_fingerprint="d", protocol="target-identification", method=method,
                      method_kind="target_rankers", method_name=method, method_params={}, method_hash="m",
                      granted=[], oracle=[], metrics={"target_rank": MetricValue(rank, False)}, trial_metrics={},
                      score_hash=None, wall_time_s=0.0)

    by = {"A": [rec("A", t, r) for t, r in enumerate((1, 2, 9))], "B": [rec("B", t, r) for t, r in enumerate((5, 5, 5))]}
    line = _comparison_line(by, "A", "B", ["target_rank"])
    assert "A better (lower) in 2/3 trials" in line


def test_settings_of_one_metric_are_ordered_numerically():
    from benchmark.report import _metric_order

    names = {"misclassification_rate@1%", "misclassification_rate@10%", "misclassification_rate@5%",
             "misclassification_rate@30%", "auprc", "misclassification_rate@k=3"}
    assert _metric_order(names) == ["auprc", "misclassification_rate@1%", "misclassification_rate@5%",
                                    "misclassification_rate@10%", "misclassification_rate@30%",
                                    "misclassification_rate@k=3"]
