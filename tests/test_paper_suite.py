"""The ``paper`` suite: entries, seed groups shared with the attack-strength suite, the
attack-strength gate, ``--only`` and ``list``."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.claims import Beats, Bound, Claim, Stable, claim_rows, evaluate
from benchmark.cli import entry_status, entry_table, main
from benchmark.config import ConfigError
from benchmark.experiment import Entry, NotRun, Suite
from benchmark.report import render
from benchmark.runner import RunOptions, get_suite, plan_suite, selected_experiments, skipped_experiments
from benchmark.store import MetricValue, Record
from benchmark.suites import paper as paper_suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite() -> Suite:
    return get_suite("paper")


def _strength_small_asr() -> dict[str, float]:
    """experiment -> mean ASR from the committed results/attack_strength_small.md table."""
    text = (ROOT / "results" / "attack_strength_small.md").read_text()
    out = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*([\w-]+)\s*\|\s*small\s*\|\s*\d+\s*\|\s*[\d.]+\s*\|\s*([\d.]+) \[", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_every_entry_names_experiments_or_says_why(suite):
    ids = [e.id for e in suite.entries]
    for needed in ("000-fig1", "000-fig2-3", "000-fig4", "000-fig5", "000-fig6-8", "000-fig7", "000-table1", "000-kappa",
                   "001-table1", "001-table2", "001-table3", "001-table4", "001-table2-agnews", "001-table2-iwslt"):
        assert needed in ids
    for e in suite.entries:
        assert e.experiments or e.missing is not None
    with pytest.raises(ConfigError, match="has no experiments"):
        Entry("x", "000", "Fig. 9", "nothing")
    with pytest.raises(ConfigError, match="NotRun status"):
        NotRun("skipped", "why")


def test_seed_groups_are_attack_strength_experiments_with_the_same_training(suite):
    """Trial t of a paper experiment attacks and trains as trial t of its attack-strength experiment
    (so that experiment's measured ASR is this model's), apart from what is recorded."""
    strength = {e.name: e for e in get_suite("attack-strength").experiments}
    checked = 0
    for exp in suite.experiments:
        base = strength.get(exp.seed_group)
        if base is None:  # auto -> dog, Fig. 4's clean pairs and paper 001's other settings have none
            assert not exp.seed_group or exp.seed_group.endswith("-auto-dog"), exp.name
            continue
        for scale in ("small", "full"):
            a, b = exp.resolve(scale, 0, suite.seed), base.resolve(scale, 0, 0)
            assert a.seed == b.seed
            for key in ("dataset", "attack", "model", "featurizer"):
                assert a.values.get(key) == b.values.get(key), (exp.name, scale, key)
            ta = {k: v for k, v in a.values["train"].items() if k != "checkpoints_per_epoch"}
            tb = {k: v for k, v in b.values["train"].items() if k != "checkpoints_per_epoch"}
            assert ta == tb, (exp.name, scale)
            checked += 1
    assert checked >= 10


def test_one_training_per_trial_for_protocols_of_one_seed_group(suite):
    a = suite.experiment("fig8-weber-blend-plane-bird").resolve("small", 1, suite.seed)
    b = suite.experiment("fig7-target-id-weber-blend").resolve("small", 1, suite.seed)
    c = suite.experiment("vision-backdoor-mitigation").resolve("small", 1, suite.seed)
    assert a.training_hash == b.training_hash == c.training_hash
    assert len({a.hash, b.hash, c.hash}) == 3  # records stay apart
    d = suite.experiment("fig8-weber-blend-auto-dog").resolve("small", 1, suite.seed)
    assert d.training_hash != a.training_hash


def test_not_run_at_small_matches_the_committed_attack_strength(suite):
    """An experiment is marked attack-not-successful at small exactly when its attack-strength
    experiment's committed small ASR is below the suite's gate."""
    asr = _strength_small_asr()
    assert asr, "could not parse results/attack_strength_small.md"
    for exp in suite.experiments:
        if exp.seed_group not in asr:
            continue
        weak = asr[exp.seed_group] < suite.min_asr
        marked = exp.not_run.get("small")
        assert (marked is not None and marked.status == "attack-not-successful") == weak, (exp.name, asr[exp.seed_group])
        if weak:
            assert f"{asr[exp.seed_group]:.2f}" in marked.reason


def test_only_selects_entries_and_small_skips_weak_attacks(suite):
    opts = RunOptions(scale="small", entries=("000-fig6-8",))
    names = [e.name for e in selected_experiments(suite, opts)]
    assert names[0] == "fig6-speech-fsdd" and len(names) == 9
    planned = [p.experiment.name for p in plan_suite(suite, opts)]
    assert planned == ["fig6-speech-fsdd", "fig6-speech-held-out-speaker", "fig6-speech-espeak",
                       "fig8-weber-blend-plane-bird", "fig8-weber-blend-auto-dog"]
    assert {s.experiment for s in skipped_experiments(suite, opts)} == set(names) - set(planned)
    with pytest.raises(ConfigError, match="no entry '000-fig9'.*000-fig1"):
        plan_suite(suite, RunOptions(scale="small", entries=("000-fig9",)))
    with pytest.raises(ConfigError, match="nothing to run: not implemented"):
        plan_suite(suite, RunOptions(scale="small", entries=("001-table2-iwslt",)))
    with pytest.raises(ConfigError, match="no experiment to run at scale 'small'"):
        plan_suite(suite, RunOptions(scale="small", experiments=("fig8-weber-one-pixel-plane-bird",)))
    assert plan_suite(suite, RunOptions(scale="smoke", experiments=("fig8-weber-one-pixel-plane-bird",)))


def test_list_shows_each_entry_status_per_scale(suite, capsys):
    fig68 = suite.entry("000-fig6-8")
    assert entry_status(suite, fig68, "full") == "runs (9 experiments)"
    assert entry_status(suite, fig68, "small").startswith("runs 5 of 9; ")
    assert "attack not successful at this scale: ASR 0.81" in entry_status(suite, fig68, "small")
    assert entry_status(suite, suite.entry("001-table2-iwslt"), "smoke").startswith("not implemented yet")
    assert entry_status(suite, suite.entry("001-table1"), "smoke").startswith("runs 1 of 32; ")
    table = entry_table()
    assert "000-table1" in table and "001-table1" in table
    assert main(["list", "entries"]) == 0
    assert "000-fig1" in capsys.readouterr().out
    assert main(["run", "--suite", "paper", "--only", "000-fig99", "--dry-run"]) == 2
    assert "no entry '000-fig99'" in capsys.readouterr().err


def _record(trial: int, asr: float, method: str = "GAS", auprc: float = 0.9) -> Record:
    return Record(
        suite="paper", suite_version=1, experiment="fig8-weber-blend-plane-bird", scale="small", trial=trial,
        seed=trial, config={}, config_hash="h", data_fingerprint="d", protocol="adversarial-set", method=method,
        method_kind="defenses", method_name="gas", method_params={}, method_hash="m", granted=[], oracle=[],
        metrics={"auprc": MetricValue(auprc, True)},
        trial_metrics={"asr_no_defense": MetricValue(asr, True), "clean_accuracy": MetricValue(0.8, True)},
        score_hash=None, wall_time_s=0.0)


def test_report_hides_defense_numbers_of_an_unsuccessful_attack():
    weak = [_record(0, 0.7, auprc=0.123456), _record(1, 0.8, auprc=0.123456)]
    out = render(weak, "paper", min_asr=0.9)
    assert "Attack not successful at scale small: mean ASR without defense 0.750 < 0.9" in out
    assert "0.123" not in out
    strong = [_record(0, 0.95, auprc=0.123456), _record(1, 0.97, auprc=0.123456)]
    out = render(strong, "paper", min_asr=0.9)
    assert "not successful" not in out and "0.123" in out
    assert "0.123" in render(weak, "paper")  # no gate: numbers shown


def test_paper_suite_trivial_scorers_and_every_fig1_estimator(suite):
    labels = {m.label for m in suite.experiment("fig1-cifar-mnist-joint").methods}
    for needed in ("GAS", "GAS-L", "TracIn", "TracInCP", "Rn. TracIn", "Influence Func.", "Rn. Influence Func.",
                   "Representer Pt.", "Rn. Representer Pt.", "Random", "Input norm", "Loss", "Gradient norm"):
        assert needed in labels
    ifs = [m for m in suite.experiment("fig1-cifar-mnist-joint").methods if m.name.startswith("if")]
    assert ifs and all(m.params["layers"] == paper_suite.IF_LAST_LAYER for m in ifs)


def test_every_claim_check_names_an_experiment_and_its_methods(suite):
    for claim in suite.claims:
        assert claim.checks, claim.id
        for chk in claim.checks:
            labels = {m.label for m in suite.experiment(chk.experiment).methods}
            for m in getattr(chk, "methods", ()) + tuple(x for x in (getattr(chk, "a", None), getattr(chk, "b", None)) if x):
                assert m in labels, (claim.id, chk)


def test_claims_paired_difference_direction_and_not_evaluated():
    recs = [_record(t, 0.95, "GAS", 0.9 + 0.01 * t) for t in range(3)] + \
           [_record(t, 0.95, "TracInCP", 0.5) for t in range(3)]
    claims = (Claim("c", "GAS beats TracInCP", "x", (Beats("fig8-weber-blend-plane-bird", "GAS", "TracInCP", "auprc"),
                                                   Beats("absent-experiment", "GAS", "TracInCP", "auprc"))),
              Claim("d", "TracInCP beats GAS", "x", (Beats("fig8-weber-blend-plane-bird", "TracInCP", "GAS", "auprc"),)),
              Claim("e", "bounded", "x", (Bound("fig8-weber-blend-plane-bird", "TracInCP", "auprc", 0.5, below=True),)),
              Claim("f", "stable", "x", (Stable("fig8-weber-blend-plane-bird", ("GAS", "TracInCP"), "auprc", 0.1),)))
    res = evaluate(claims, recs)
    assert res[0].holds and res[0].significant and res[0].mean == pytest.approx(0.41)
    assert res[1].holds is None
    assert res[2].holds is False
    assert res[3].holds is True  # 0.5 <= 0.5
    assert res[4].holds is False and res[4].mean == pytest.approx(0.41)
    _, rows = claim_rows(res)
    verdicts = [r[-1] for r in rows if r[0] and not r[0].startswith("  ")]
    assert verdicts[0] == "holds, every check significantly (1 checks not evaluated)"
    assert verdicts[1].startswith("does not hold: 1 of 1")
    assert evaluate(claims, recs, excluded={"fig8-weber-blend-plane-bird"})[0].holds is None
    out = render(recs, "paper", claims=claims)
    assert "the papers' claims at scale small" in out and "GAS beats TracInCP" in out


def test_paper001_rows_run_at_small_exactly_where_their_calibration_reached_the_gate(suite):
    """A Table 1 (001) row runs at small only where its committed calibration (attack alone, no
    defense) reached MIN_ASR, with the calibrated setting; the weak rows quote their ASR."""
    import json

    ran = 0
    for (attack, eps), path in paper_suite.CALIBRATED_001_SMALL.items():
        cal = json.loads((ROOT / path).read_text())
        setting = next(s for s in cal["settings"] if s["attack_params"] == {"epsilon": eps})
        assert setting["asr_mean"] >= suite.min_asr, (attack, eps, setting["asr_mean"])
        exp = suite.experiment(f"t1-001-{attack}-eps{int(round(eps * 100)):02d}-airplane-bird")
        assert "small" not in exp.not_run
        tc = exp.resolve("small", 0, suite.seed)
        assert tc.values["attack"]["params"]["epsilon"] == eps
        assert tc.values["attack"]["params"]["n_train"] == cal["settings"][0]["n_train"]
        assert tc.values["train"]["checkpoints_per_epoch"] == 1
        ran += 1
    assert ran == 2
    asr = _strength_small_asr()
    for (attack, eps), why in paper_suite.WEAK_001_AT_SMALL.items():
        exp = suite.experiment(f"t1-001-{attack}-eps{int(round(eps * 100)):02d}-airplane-bird")
        assert exp.not_run["small"].status == "attack-not-successful" and exp.not_run["small"].reason == why
        value = float(re.search(r"ASR ([\d.]+)", why).group(1))
        source = re.search(r"\((results/[\w./-]+)", why).group(1)
        if source.endswith(".md"):
            measured = asr[re.search(r"attack_strength_small\.md, ([\w-]+)\)", why).group(1)]
        else:
            measured = json.loads((ROOT / source).read_text())["settings"][0]["asr_mean"]
        assert measured < suite.min_asr and abs(measured - value) < 0.0051, (exp.name, measured, why)
    runs = [e.name for e in suite.experiments if e.name.startswith("t1-001-") and "small" not in e.not_run]
    assert sorted(runs) == ["t1-001-input-aware-eps10-airplane-bird", "t1-001-pixel-eps10-airplane-bird"]


def test_text_rows_run_at_small_exactly_where_their_calibration_reached_the_gate(suite):
    """A Tables 2-4 (001) row runs at small only where its committed calibration (attack alone)
    reached MIN_ASR with the small setting's sentence count; the others are not run there."""
    import json

    for (attack, eps, n_trig), path in paper_suite.CALIBRATED_TEXT_SMALL.items():
        cal = json.loads((ROOT / path).read_text())
        setting = next(s for s in cal["settings"] if s["attack_params"] == {"epsilon": eps})
        assert setting["asr_mean"] >= suite.min_asr, (attack, eps, setting["asr_mean"])
        tag = f"{attack}{'' if n_trig == 1 else f'-{n_trig}trig'}-eps{int(round(eps * 100)):02d}"
        tc = suite.experiment(f"t2-001-{tag}").resolve("small", 0, suite.seed)
        assert tc.values["attack"]["params"]["n_train"] == setting["n_train"]
    for exp in suite.experiments:
        if exp.name.startswith("t2-001-") and "small" not in exp.not_run:
            key = next(k for k in paper_suite.CALIBRATED_TEXT_SMALL
                       if exp.name.startswith(f"t2-001-{k[0]}") and f"eps{int(round(k[1] * 100)):02d}" in exp.name)
            assert key
    for (attack, eps, n_trig), why in paper_suite.WEAK_TEXT_AT_SMALL.items():
        assert n_trig == 1
        exp = suite.experiment(f"t2-001-{attack}-eps{int(round(eps * 100)):02d}")
        assert exp.not_run["small"].status == "attack-not-successful" and exp.not_run["small"].reason == why
        source = re.search(r"\((results/[\w./-]+)\)", why).group(1)
        cal = json.loads((ROOT / source).read_text())
        assert cal["experiment"] == f"text-{attack}" and cal["scale"] == "small"
        measured = next(s for s in cal["settings"] if s["attack_params"] == {"epsilon": eps})["asr_mean"]
        value = float(re.search(r"ASR ([\d.]+)", why).group(1))
        assert measured < suite.min_asr and abs(measured - value) < 0.0051, (exp.name, measured, why)


def test_text_fit_mitigation_reuses_the_table2_rows_poisons_and_model(suite):
    """FIT-driven mitigation on text (paper 000 Alg. 2-3 as a Table 2 method) trains the very model
    its Table 2 row trains: same data, attack, featurizer, model and training values and seeds."""
    for attack in ("insert", "syntactic"):
        row, mit = (suite.experiment(f"t2-001-{attack}-eps10{s}") for s in ("", "-fit-mitigation"))
        assert mit.not_run.get("small") == row.not_run.get("small")
        if "small" in row.not_run:
            continue
        for trial in range(2):
            a, b = row.resolve("small", trial, suite.seed), mit.resolve("small", trial, suite.seed)
            for key in ("dataset", "attack", "featurizer", "model", "train"):
                assert a.values[key] == b.values[key], (attack, key)
            assert a.seed == b.seed
        tc = mit.resolve("small", 0, suite.seed)
        assert tc.values["protocol"]["params"]["target_source"] == "ranker"
        assert tc.values["protocol"]["params"]["stop"] == "label_changed"
        assert [m.label for m in mit.methods] == ["FIT-driven mitigation (GAS)"]


def test_table2_notes_its_bertscore_column_with_the_papers_numbers():
    from benchmark.tools import render_paper

    entry = next(e for e in paper_suite.ENTRIES if e.id == "001-table2")
    (note,) = render_paper._methods_not_run(entry, "small")
    assert note.startswith("**BERTScore: not run at scale small** (model not available offline")
    assert "t2-001-insert-eps10 attack_success_rate 0.079" in note  # paper 001 Table 2, SST2 Insert
    assert "t2-001-syntactic-eps10 attack_success_rate 0.966" in note
