"""The ``paper`` suite: the papers' tables and figures, one :class:`~benchmark.experiment.Entry`
each, reproduced on real data (``--only ENTRY`` runs one; ``python -m benchmark list`` shows each
entry's status at every scale).

Every experiment here is an ``attack-strength`` experiment (``benchmark/suites/attack_strength.py``)
with its protocol and methods swapped in, and with that experiment's name as its *seed group*: trial
``t`` of a paper experiment attacks the same data with the same poisons and trains the same model
as trial ``t`` of the attack-strength experiment whose ASR ``results/attack_strength_small.md``
reports (at ``small`` the paper experiments record one checkpoint per epoch instead of five; that
changes what is recorded, not the training).  Experiments of one seed group that differ only in
their protocol share one trained model per trial (the training cache ignores the protocol).

Attack strength first (issue 14 item 2): the Weber one- and four-pixel backdoors stay below ASR 0.9
at ``small`` (0.81 and 0.85 in ``results/attack_strength_small.md``), so their defense experiments
are not run at ``small`` (``NotRun("attack-not-successful", ...)``, checked against that file by a
test); every run experiment's report shows its measured ASR beside the defense results and marks
an experiment whose mean ASR is below :data:`MIN_ASR`.

Scales: ``full`` = the papers' settings; ``small`` = this project's 2-core CPU (attack settings
frozen in the attack-strength suite, defense settings from the papers or ours, fixed before the
run); ``smoke`` = seconds per trial, the golden-result check of ``python -m benchmark check``.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from benchmark.claims import Beats, Bound, Claim, Stable
from benchmark.config import ours, paper, reference_code, unwrap
from benchmark.experiment import Entry, Experiment, MethodSpec, NotRun, Suite, deep_merge
from benchmark.protocols.filtering import FIG4_PERCENTS
from benchmark.registry import suites
from benchmark.rng import derive_seed
from benchmark.suites import attack_strength as strength
from benchmark.suites.quick import (ESTIMATORS, FIT_RANKERS, RENORMALIZATION_PAIRS, TARGET_BASELINES,
                                    TRIVIAL)

VERSION = 1

#: The ASR below which an experiment's defense results are flagged "attack not successful"
#: (issue 14 item 2; paper 000 Table 1's weakest original attack has ASR 0.905).
MIN_ASR = ours(0.9, "issue 14 item 2: ASR >= 0.9 on the analysed targets")

#: Trials per experiment at small scale: the issue's floor (>= 3), within the 75-minute budget.
SMALL_TRIALS = ours(3, "CPU budget: issue 14 item 7 asks for >= 3 trials per entry")

#: At small scale the influence estimators use one checkpoint per epoch (8 instead of 40): each
#: checkpoint costs one per-example gradient pass over D_tr (paper 000 Sec. 5 notes that fewer
#: checkpoints trade accuracy for speed).
SMALL_CHECKPOINTS = {"checkpoints_per_epoch": ours(1, "CPU budget: 8 checkpoints per trial "
                                                      "(reference NUM_SUBEPOCH = 5, i.e. 40)")}

#: Influence functions' parameter scope where the model is too large for Eq. 1 over all of theta:
#: the final linear layer with the exact damped Hessian.
IF_LAST_LAYER = ours(("classifier",), "exact damped Hessian of the final linear layer; the reference "
                                      "code uses LiSSA over all parameters (original_code.md Sec. 2.4)")


#: Ours, a diagnostic: GAS over the same final linear layer as influence functions' scope, to tell
#: whether an IF variant's lead comes from that scope or from the inverse Hessian.
GAS_FINAL_LAYER = MethodSpec("GAS (final layer)", "gas", params={
    "layers": ours(("classifier",), "diagnostic: the parameter scope of IF_LAST_LAYER")})


def _estimators(if_layers: Any) -> tuple[MethodSpec, ...]:
    """Paper 000 Fig. 1's estimators with influence functions' scope set, and the diagnostic
    :data:`GAS_FINAL_LAYER`."""
    return tuple(dataclasses.replace(m, params={**m.params, "layers": if_layers}) if "layers" in m.params else m
                 for m in ESTIMATORS) + (GAS_FINAL_LAYER,)


#: Paper 000 Figs. 6 and 8 also compare Deep k-NN (Peri et al.; attacks_datasets.md: "Baselines in A").
DEEP_KNN = MethodSpec("Deep k-NN", "deep-knn")

#: Paper 000 Fig. 7: FIT with GAS / GAS-L against the target-identification baselines.
TARGET_RANKERS = FIT_RANKERS + TARGET_BASELINES

#: Suppl. F.6: FIT's upper-tail count kappa in {1, 5, 10, 25} (10 = the reference code's ANOM_CUTOFF).
KAPPAS = (1, 5, 25)
KAPPA_RANKERS = tuple(
    MethodSpec(f"FIT w/ {est}, κ={k}", "fit", "target_rankers", {"estimator": name, "kappa": k})
    for est, name in (("GAS", "gas"), ("GAS-L", "gas-l")) for k in KAPPAS)

MITIGATORS = (MethodSpec("GAS", "gas"), MethodSpec("GAS-L", "gas-l"))


def _derive(base: Experiment, name: str, description: str, protocol: dict, methods: tuple[MethodSpec, ...],
            reference: str, scales: dict[str, dict] | None = None, not_run: dict[str, NotRun] | None = None,
            comparisons: tuple[tuple[str, str], ...] = ()) -> Experiment:
    """``base`` (an attack-strength experiment) with another protocol and methods, in its seed group."""
    merged_scales = {s: dict(o) for s, o in base.scales.items()}
    for s, o in (scales or {}).items():
        merged_scales[s] = deep_merge(merged_scales.get(s, {}), o)
    return Experiment(
        name=name, description=description, config={**base.config, "protocol": protocol}, methods=methods,
        scales=merged_scales, comparisons=comparisons, paper_reference=reference,
        seed_group=base.seed_group or base.name, not_run=dict(not_run or {}))


def _small(extra: dict | None = None, train: dict | None = None) -> dict:
    return deep_merge({"train": {**SMALL_CHECKPOINTS, **(train or {})}, "trials": SMALL_TRIALS}, extra or {})


def _weber_base(trigger: str, pair: tuple[int, int]) -> Experiment:
    """Weber ``trigger`` on class pair ``(y_targ, y_adv)``: plane -> bird (0, 2) or auto -> dog (1, 5)."""
    base = strength.weber(trigger, strength.WEBER_SMALL[trigger])
    if pair == (0, 2):
        return base
    where = "000 Sec. 6.1 pair auto -> dog"
    return dataclasses.replace(
        base, name=f"{base.name}-auto-dog", seed_group=f"{base.name}-auto-dog",
        config=deep_merge(base.config, {"attack": {"params": {"y_targ": paper(pair[0], where),
                                                              "y_adv": paper(pair[1], where)}}}))


PAIRS = {"plane-bird": (0, 2), "auto-dog": (1, 5)}

#: Triggers whose small setting is below MIN_ASR in results/attack_strength_small.md (plane -> bird;
#: the auto -> dog pair is not run where the plane -> bird one already fails).
WEAK_AT_SMALL = {
    "one-pixel": "ASR 0.81 at small (results/attack_strength_small.md, weber-one-pixel)",
    "four-pixel": "ASR 0.85 at small (results/attack_strength_small.md, weber-four-pixel)",
}

PROTOCOL_ADV_SET = {"name": "adversarial-set", "params": {}}

SMOKE_TARGET_ID = {"protocol": {"params": {"n_targets": ours(3, "smoke"), "n_non_targets": ours(20, "smoke")}}}
SMOKE_MITIGATION = {"protocol": {"params": {"max_rounds": ours(1, "smoke")}}}


#: Issue 14 item 2b: the speech entries on FSDD and on two datasets that can test the claim (their
#: attack settings calibrated on ASR alone before any defense ran on them: results/calibration/
#: attack-strength_speech-noise-burst-{held-out-speaker,espeak}.json).
SMOKE_ESPEAK = {"dataset": {"params": {"n_speakers": ours(3, "smoke"), "clips_per_digit": ours(3, "smoke"),
                                       "n_test": ours(1, "smoke")}}}


def speech_bases() -> list[tuple[str, Experiment, dict, dict]]:
    """(suffix, attack-strength experiment, its not_run, extra smoke override) per speech dataset."""
    return [("fsdd", strength.speech(), {}, {}),
            ("held-out-speaker", strength.speech_held_out(), {}, {}),
            ("espeak", strength.speech_espeak(), {}, SMOKE_ESPEAK)]


def fig1() -> list[Experiment]:
    base = strength.cifar_mnist_joint()
    return [_derive(base, "fig1-cifar-mnist-joint",
                    "Adversarial-set AUPRC on CIFAR-10 frog vs airplane + 150 MNIST 0s, every estimator of Fig. 1",
                    PROTOCOL_ADV_SET, _estimators(IF_LAST_LAYER) + TRIVIAL, "paper 000 Sec. 4.1, Fig. 1",
                    scales={"small": _small()}, comparisons=RENORMALIZATION_PAIRS)]


def fig6_8() -> list[Experiment]:
    out = []
    for suffix, base, not_run, smoke in speech_bases():
        out.append(_derive(base, f"fig6-speech-{suffix}",
                           f"Adversarial-set AUPRC, speech backdoor (setup 4 -> 5) on {base.description.split(' on ')[-1] if suffix != 'fsdd' else 'FSDD'}, every estimator",
                           PROTOCOL_ADV_SET, _estimators(IF_LAST_LAYER) + (DEEP_KNN,) + TRIVIAL, "paper 000 Sec. 6.2, Fig. 6",
                           scales={"small": _small(), "smoke": smoke}, not_run=not_run,
                           comparisons=RENORMALIZATION_PAIRS))
    for trigger in ("blend", "one-pixel", "four-pixel"):
        for pair_name, pair in PAIRS.items():
            base = _weber_base(trigger, pair)
            not_run = {}
            if trigger in WEAK_AT_SMALL:
                why = WEAK_AT_SMALL[trigger] + ("" if pair_name == "plane-bird" else "; auto -> dog not run either")
                not_run["small"] = NotRun("attack-not-successful", why)
            out.append(_derive(base, f"fig8-weber-{trigger}-{pair_name}",
                               f"Adversarial-set AUPRC, Weber {trigger} backdoor {pair_name}, every estimator",
                               PROTOCOL_ADV_SET, _estimators(IF_LAST_LAYER) + (DEEP_KNN,) + TRIVIAL,
                               "paper 000 Sec. 6.2, Figs. 6 and 8", scales={"small": _small()},
                               not_run=not_run, comparisons=RENORMALIZATION_PAIRS))
    return out


def _target_id(base: Experiment, name: str, what: str, n_targets: Any, n_non_targets: Any,
               not_run: dict | None = None, smoke: dict | None = None) -> Experiment:
    protocol = {"name": "target-identification", "params": {"n_targets": n_targets, "n_non_targets": n_non_targets}}
    return _derive(base, name, f"Target identification (FIT vs baselines, kappa study), {what}", protocol,
                   TARGET_RANKERS + KAPPA_RANKERS, "paper 000 Sec. 6.3, Fig. 7; suppl. F.6 (kappa)",
                   scales={"small": _small(), "smoke": deep_merge(SMOKE_TARGET_ID, smoke or {})}, not_run=not_run,
                   comparisons=(("FIT w/ GAS", "Max k-NN"), ("FIT w/ GAS", "Random")))


def fig7() -> list[Experiment]:
    return [
        _target_id(_weber_base("blend", (0, 2)), "fig7-target-id-weber-blend", "Weber blend backdoor plane -> bird",
                   reference_code(35, "TOT_BD_DETECT (CIFAR backdoor)"),
                   reference_code(250, "TOT_CL_DETECT (CIFAR backdoor)")),
    ] + [
        _target_id(base, "fig7-target-id-speech" + ("" if suffix == "fsdd" else f"-{suffix}"),
                   f"speech backdoor ({suffix})", ours(10, "FSDD has 30 test 4s; about a third of them"),
                   reference_code(220, "speech TOT_CL_DETECT"), not_run, smoke)
        for suffix, base, not_run, smoke in speech_bases()
    ]


NO_DEFENSE = (MethodSpec("no defense", "none"),)


def fig2_3() -> list[Experiment]:
    """Fig. 2 (loss tracking, CIFAR-10 + MNIST joint task) and Fig. 3 (a target's layerwise
    gradient, Weber one-pixel and blend)."""
    joint = strength.cifar_mnist_joint()
    out = [_derive(joint, "fig2-loss-tracking-cifar-mnist-joint",
                   "D_adv / D_cl losses (median, IQR) and GNR (Eq. 6) at every checkpoint, joint task",
                   {"name": "training-diagnostics", "params": {"layer_split": ours(False, "Fig. 2 only")}},
                   NO_DEFENSE, "paper 000 Sec. 4.2, Fig. 2",
                   scales={"small": {"trials": ours(1, "Fig. 2 shows one training run; every checkpoint "
                                                      "(5 per epoch, the reference NUM_SUBEPOCH) is kept, "
                                                      "to show the intra-epoch swings")}})]
    for trigger in ("one-pixel", "blend"):
        base = _weber_base(trigger, (0, 2))
        not_run = ({"small": NotRun("attack-not-successful", WEAK_AT_SMALL[trigger])}
                   if trigger in WEAK_AT_SMALL else {})
        out.append(_derive(base, f"fig3-layer-split-weber-{trigger}",
                           f"A successful target's gradient norm split into conv1 / final linear / rest, Weber {trigger}",
                           {"name": "training-diagnostics", "params": {"loss_tracking": ours(False, "Fig. 3 only")}},
                           NO_DEFENSE, "paper 000 Sec. 4.4, Fig. 3", scales={"small": _small()}, not_run=not_run))
    return out


def fig5() -> list[Experiment]:
    """GAS / GAS-L densities of a target and a non-target (on the trained models of Figs. 6-8)."""
    out = []
    for base, name, what in ((strength.speech(), "fig5-density-speech", "speech backdoor on FSDD"),
                             (_weber_base("blend", (0, 2)), "fig5-density-weber-blend", "Weber blend backdoor plane -> bird")):
        out.append(_derive(base, name, f"Influence densities of a target and a non-target with the robust normal, {what}",
                           {"name": "influence-density", "params": {}}, MITIGATORS, "paper 000 Sec. 5.2, Fig. 5",
                           scales={"small": _small()}, comparisons=()))
    return out


#: Fig. 4's estimators (paper 000 Sec. 4.5: influence functions and TracIn with and without
#: renormalization, GAS-L, against random removal; representer point is excluded there, fn. 10).
#: With one checkpoint per epoch (small) TracIn equals TracInCP, so only TracInCP is listed.
FILTERING_METHODS = (
    MethodSpec("Influence Func.", "if", params={"layers": IF_LAST_LAYER}),
    MethodSpec("Rn. Influence Func.", "if-renorm", params={"layers": IF_LAST_LAYER}),
    MethodSpec("TracInCP", "tracincp"),
    MethodSpec("GAS", "gas"),
    MethodSpec("GAS-L", "gas-l"),
    MethodSpec("Random", "random"),
)

CIFAR_CLASSES = tuple(range(10))


def _fig4_pairs() -> dict[str, tuple[int, int]]:
    """Weber's two pairs and three random ones (paper 000 Sec. 4.5: "the two pairs specified by
    Weber et al. and three additional random pairs"; ours: drawn once with a fixed seed among
    the other pairs)."""
    fixed = {"plane-bird": (0, 2), "auto-dog": (1, 5)}
    others = [pq for pq in itertools.combinations(CIFAR_CLASSES, 2) if pq not in fixed.values()]
    rng = np.random.default_rng(derive_seed("paper-000-fig4-random-pairs"))
    chosen = [others[i] for i in sorted(rng.choice(len(others), 3, replace=False))]
    return {**fixed, **{f"random-{a}-{b}": (a, b) for a, b in chosen}}


def fig4() -> list[Experiment]:
    """Influence filtering on clean CIFAR-10 pairs, ResNet9 pre-trained on the eight held-out
    classes and fine-tuned on the pair (paper 000 Sec. 4.5, Fig. 4)."""
    out = []
    for pair_name, pair in _fig4_pairs().items():
        held_out = tuple(c for c in CIFAR_CLASSES if c not in pair)
        where = "000 Sec. 4.5"
        config = {
            "dataset": strength.CIFAR, "featurizer": strength.IMAGE,
            "attack": {"name": "clean-pair", "params": {"classes": paper(pair, f"{where}: a CIFAR10 class pair"),
                                                        "n_train": paper(None, f"{where}: the pair's training images")}},
            "pretrain": {"classes": paper(held_out, f"{where}: pre-trained on the eight held-out classes"),
                         "n_per_class": paper(None, f"{where}: all their training images")},
            "model": {"name": "resnet9", "params": {"width": reference_code(64, "datasets/_cifar10_resnet.py")}},
            "train": strength.TRAIN_000,
            "protocol": {"name": "filtering", "params": {
                "n_retrain": paper(20, f"{where}: 20 models trained per method per trial"),
                "n_selection_models": reference_code(30, "NUM_INIT_TRAIN"),
                "mis_rate_low": paper(0.1, f"{where}: moderate misclassification rate (10-20%)"),
                "mis_rate_high": paper(0.2, f"{where}: moderate misclassification rate (10-20%)")}},
            "trials": paper(30, f"{where}, Fig. 4: 30 trials per class pair"),
        }
        small = {
            "attack": {"params": {"n_train": ours(1000, "CPU budget: 70 fine-tunings per trial"),
                                  "n_test": ours(1000, "CPU budget: the z_filt candidates")}},
            "pretrain": {"n_per_class": ours(500, "CPU budget: 4,000 pre-training images")},
            "model": {"params": strength.SMALL_RESNET9},
            "train": {"epochs": ours(4, "CPU budget: fine-tuning from the pre-trained backbone"), **SMALL_CHECKPOINTS},
            "protocol": {"params": {"n_retrain": ours(2, "CPU budget: 60 fine-tunings per trial"),
                                    "n_selection_models": ours(10, "CPU budget; rates 0.1 and 0.2 qualify")}},
            "trials": SMALL_TRIALS,
        }
        smoke = {
            "attack": {"params": {"n_train": ours(200, "smoke"), "n_test": ours(100, "smoke")}},
            "pretrain": {"n_per_class": ours(20, "smoke"), "train": {"epochs": ours(1, "smoke")}},
            "model": {"params": {"width": ours(4, "smoke")}},
            "train": strength.SMOKE_TRAIN, "trials": strength.SMOKE_TRIALS,
            "protocol": {"params": {"n_retrain": ours(1, "smoke"), "n_selection_models": ours(2, "smoke"),
                                    "mis_rate_low": ours(0.0, "smoke: any test example qualifies"),
                                    "mis_rate_high": ours(1.0, "smoke"),
                                    "removals": [{"name": "top-percent", "params": {"percent": ours(10, "smoke")}}]}},
        }
        not_run = {} if pair_name == "plane-bird" else {"smoke": NotRun("deferred", "smoke: one pair checks the plumbing")}
        if pair_name.startswith("random"):
            not_run["small"] = NotRun("deferred", "the random pairs run at full scale only (issue 14 item 1)")
        elif pair_name == "auto-dog":
            not_run["small"] = NotRun("deferred", "CPU budget: one class pair (plane -> bird) at small")
        out.append(Experiment(
            name=f"fig4-filtering-{pair_name}",
            description=f"Influence filtering of z_filt's top-ranked training data, clean CIFAR-10 {pair_name}, "
                        f"ResNet9 pre-trained on the 8 other classes",
            config=config, methods=FILTERING_METHODS, scales={"small": small, "smoke": smoke},
            comparisons=(("Rn. Influence Func.", "Influence Func."), ("GAS", "TracInCP"),
                         ("Influence Func.", "Random"), ("TracInCP", "Random")),
            paper_reference="paper 000 Sec. 4.5, Fig. 4", not_run=not_run))
    return out


def _mitigation(base: Experiment, name: str, what: str, target_source: str = "known",
                smoke: dict | None = None) -> Experiment:
    params: dict[str, Any] = {
        "removal": {"name": paper("threshold", "000 Alg. 3 line 6"),
                    "params": {"zeta": ours(2.0, "the supplement's value is unknown; reference CUTOFF_STDEV = 2")}},
        "n_targets": paper(1, "000 Sec. 6.4: one randomly selected target"),
        "target_source": paper(target_source, "000 Table 1 (known target)" if target_source == "known"
                               else "000 Alg. 2: the ranker's top candidate"),
    }
    if target_source == "ranker":
        params["stop"] = paper("label_changed", "000 Alg. 2: stop when the identified target's label changes")
    return _derive(base, name, f"Target-driven mitigation (Alg. 3, {target_source} target), {what}",
                   {"name": "mitigation", "params": params}, MITIGATORS, "paper 000 Sec. 6.4, Table 1",
                   scales={"small": _small({"protocol": {"params": {"max_rounds": ours(3, "CPU budget: <= 3 retrains")}}}),
                           "smoke": deep_merge(SMOKE_MITIGATION, smoke or {})})


def table1() -> list[Experiment]:
    vision, speech = _weber_base("blend", (0, 2)), strength.speech()
    out = [
        _mitigation(vision, "vision-backdoor-mitigation", "Weber blend backdoor plane -> bird"),
        _mitigation(speech, "speech-backdoor-mitigation", "speech backdoor on FSDD"),
    ]
    for suffix, base, not_run, smoke in speech_bases()[1:]:
        exp = _mitigation(base, f"speech-backdoor-mitigation-{suffix}", f"speech backdoor ({suffix})", smoke=smoke)
        out.append(dataclasses.replace(exp, not_run=not_run))
    for base, name, what in ((vision, "vision-backdoor-mitigation-e2e", "Weber blend backdoor plane -> bird"),
                             (speech, "speech-backdoor-mitigation-e2e", "speech backdoor on FSDD")):
        out.append(_mitigation(base, name, what, target_source="ranker"))
    return out


# -- paper 001 Table 1 ---------------------------------------------------------------------------

#: Paper 001 Sec. 4.1: "4 pairs of (attack, target) labels" = (y_targ, y_adv) (attacks/patterns.py).
PAIRS_001 = {"airplane-bird": (0, 2), "truck-deer": (9, 4), "automobile-cat": (1, 3), "ship-frog": (8, 6)}
#: Paper 001's attack names -> the attack-strength experiments (their attack, victim and small settings).
ATTACKS_001 = {"pixel": strength.spectral_pixel, "semantic": strength.semantic,
               "input-aware": strength.input_aware, "mixing": strength.composite}
EPSILONS_001 = (0.05, 0.1)  # paper 001 Sec. 4.1 / Table 1: eps N in {0.05, 0.1}

#: The influence graph's Hessian scope (paper 001 states none): the exact damped Hessian of the
#: final linear layer, as influence functions' scope in paper 000's entries (IF_LAST_LAYER).
GRAPH_LAYERS = ours(("classifier",), "paper 001 states no scope; as IF_LAST_LAYER")

#: Our GAS graph's parameter scope: the IF graph's, so that the two graphs differ in the edge
#: weights only (all parameters would be an N x N Gram over every layer at every checkpoint:
#: at small 10,000^2 pairs x 12 checkpoints).
GAS_GRAPH_LAYERS = ours(("classifier",), "as GRAPH_LAYERS: the graphs then differ in the influence only")

#: Table 1's columns (paper 001's labels), then paper 000's methods and ours in the same protocol.
TABLE1_001_METHODS = (
    MethodSpec("no defense", "none"),
    MethodSpec("PCA", "spectral-signatures"),
    MethodSpec("Clustering", "activation-clustering"),
    MethodSpec("SPECTRA", "spectre"),
    MethodSpec("COSIN", "cosin"),
    MethodSpec("Greedy", "influence-graph-greedy", params={"layers": GRAPH_LAYERS}),
    MethodSpec("Agglomerate", "influence-graph-agglomerative", params={"layers": GRAPH_LAYERS}),
    MethodSpec("Deep k-NN", "deep-knn"),
    MethodSpec("GAS (known target)", "gas"),
    MethodSpec("Greedy (GAS, ours)", "influence-graph-gas-greedy", params={"layers": GAS_GRAPH_LAYERS}),
    MethodSpec("Random", "random"),
)

#: Paper 001 rows that run at small: the attack-strength suite's frozen small victim (ResNet-8,
#: 12 epochs, 10,000 images) with the paper's larger rate eps N = 0.1, calibrated on ASR and clean
#: accuracy alone before any defense ran on them (issue 9 item 5; each file is the calibration).
CALIBRATED_001_SMALL: dict[tuple[str, float], str] = {
    ("pixel", 0.1): "results/calibration/attack-strength_spectral-pixel_eps0.1.json",
    ("input-aware", 0.1): "results/calibration/attack-strength_input-aware_eps0.1.json",
}

#: Paper 001 rows below MIN_ASR at small with that victim (results/attack_strength_small.md and the
#: calibration files it cites); no defense runs on them there.
WEAK_001_AT_SMALL = {
    ("pixel", 0.05): "ASR 0.90 (0.898) at small (results/attack_strength_small.md, spectral-pixel)",
    ("semantic", 0.05): "ASR 0.71 at small (results/attack_strength_small.md, semantic)",
    ("input-aware", 0.05): "ASR 0.85 at small (results/attack_strength_small.md, input-aware)",
    ("mixing", 0.1): "ASR 0.63 at small (results/attack_strength_small.md, composite)",
    ("mixing", 0.05): "ASR 0.435 at small (results/calibration/attack-strength_composite.json)",
}

#: At small the table's influence defenses use one checkpoint per epoch (12; the attack-strength
#: setting records 5 per epoch, i.e. 60): each checkpoint is one per-example gradient pass over D_tr.
SMALL_CHECKPOINTS_001 = {"checkpoints_per_epoch": ours(1, "CPU budget: 12 checkpoints per trial")}


#: The mixing attack's second class per pair (the composite attack's docstring: reference code's
#: 0 + 1 -> 2 for airplane -> bird; ours for the other pairs).
MIXING_PARTNERS = {
    "airplane-bird": reference_code(1, "composite-attack CIFAR rule 0 + 1 -> 2"),
    "truck-deer": ours(0, "truck + airplane -> deer"),
    "automobile-cat": ours(2, "automobile + bird -> cat"),
    "ship-frog": ours(9, "ship + truck -> frog"),
}


def table1_001() -> list[Experiment]:
    """Paper 001 Table 1: four attacks x eps N in {0.05, 0.1} x four class pairs, every defender
    removes 1.5 eps N and the model is retrained (protocol ``remove-and-retrain``)."""
    out = []
    protocol = {"name": "remove-and-retrain", "params": {
        "removal": {"name": paper("top-k", "001 Sec. 4.1"), "params": {"factor": paper(1.5, "001 Sec. 4.1: 1.5 eps N removed")}}}}
    for attack, make in ATTACKS_001.items():
        base = make()
        for eps in EPSILONS_001:
            for pair_name, (y_targ, y_adv) in PAIRS_001.items():
                where = "001 Sec. 4.1"
                params: dict[str, Any] = {"y_targ": paper(y_targ, f"{where} pair {pair_name}"),
                                          "y_adv": paper(y_adv, f"{where} pair {pair_name}")}
                not_run: dict[str, NotRun] = {}
                if attack == "semantic":
                    # the attack-strength full setting (eps 0.03) is the largest the green feature supports
                    if eps == 0.1:
                        not_run["full"] = NotRun("not-implemented", "a natural-feature semantic backdoor at eps N = "
                                                 "0.1 needs 5,000 source images with the feature; CIFAR-10 has "
                                                 "about 1,500 green airplanes (attack_strength.semantic)")
                else:
                    params["epsilon"] = paper(eps, f"{where}: eps N = {eps}")
                if attack == "mixing":
                    params["partner"] = MIXING_PARTNERS[pair_name]
                scales = {**base.scales}
                if pair_name != "airplane-bird":
                    not_run["small"] = NotRun("deferred", "CPU budget: at small, the pair airplane -> bird only")
                elif (attack, eps) in CALIBRATED_001_SMALL:
                    scales["small"] = deep_merge(base.scales["small"], {
                        "attack": {"params": {"epsilon": paper(eps, f"{where}: eps N = {eps}; ASR calibrated at small: "
                                                                    f"{CALIBRATED_001_SMALL[attack, eps]}")}},
                        "train": SMALL_CHECKPOINTS_001})
                elif (attack, eps) in WEAK_001_AT_SMALL:
                    not_run["small"] = NotRun("attack-not-successful", WEAK_001_AT_SMALL[attack, eps])
                else:
                    not_run["small"] = NotRun("deferred", "CPU budget: not calibrated at small")
                if pair_name != "airplane-bird" or eps != 0.05 or attack != "pixel":
                    not_run["smoke"] = NotRun("deferred", "smoke: one attack, pair and eps check the plumbing")
                config = deep_merge(base.config, {"attack": {"params": params}, "protocol": protocol})
                # the attack-strength experiment's own setting: the same poisons and model (seed group)
                same = (unwrap(config["attack"]) == unwrap(base.config["attack"])
                        and "small" in not_run and not_run["small"].status == "attack-not-successful")
                smoke = deep_merge(base.scales.get("smoke", {}), {"train": {"checkpoints_per_epoch": ours(2, "smoke: GAS needs checkpoints")}})
                out.append(Experiment(
                    name=f"t1-001-{attack}-eps{int(round(eps * 100)):02d}-{pair_name}",
                    description=f"Paper 001 Table 1: {attack} backdoor, eps N = {eps}, {pair_name}, remove 1.5 eps N and retrain",
                    config=config, methods=TABLE1_001_METHODS,
                    scales={**scales, "smoke": smoke}, paper_reference="paper 001 Sec. 4.1, Table 1",
                    seed_group=base.name if same else None, not_run=not_run,
                    comparisons=(("Agglomerate", "PCA"), ("Agglomerate", "SPECTRA"), ("Agglomerate", "COSIN"),
                                 ("Greedy", "Agglomerate"), ("GAS (known target)", "Agglomerate"))))
    return out


TABLE1_001_EXPERIMENTS = tuple(e.name for e in table1_001())


# -- paper 001 Tables 2-4 (SST-2) ------------------------------------------------------------------

#: Paper 001 Sec. 3.2.1: text graphs use the word-level influence (Eqs. 5-6) over the final layer.
TEXT_GRAPH = {"layers": GRAPH_LAYERS, "influence": paper("word", "001 Sec. 3.2.1 Eqs. 5-6 (text)"),
              "word_rank": ours(7, "CPU budget: W's row + the V_W rows' 7 leading directions, 8 VJPs per sentence "
                                   "(word_influence docstring; None = exact)")}

#: Table 2's columns (paper 001's labels; BERTScore needs a masked LM that is not available offline,
#: see TEXT_NOT_OFFLINE), then paper 000's GAS and the random control in the same protocol.
TABLE2_001_METHODS = (
    MethodSpec("no defense", "none"),
    MethodSpec("PCA", "spectral-signatures"),
    MethodSpec("Clustering", "activation-clustering"),
    MethodSpec("SPECTRA", "spectre"),
    MethodSpec("COSIN", "cosin"),
    MethodSpec("ONION", "onion"),
    MethodSpec("Greedy", "influence-graph-greedy", params=TEXT_GRAPH),
    MethodSpec("Agglomerate", "influence-graph-agglomerative", params=TEXT_GRAPH),
    MethodSpec("GAS (known target)", "gas"),
    MethodSpec("Random", "random"),
)
#: Table 2 columns not run offline, with the reason (shown in the rendered table).
TEXT_NOT_OFFLINE = {"BERTScore": "model not available offline: Fan et al.'s masked LM (BERT-base) cannot be "
                                 "loaded without a model hub; `bertscore` runs with --model-path bert-base-uncased=DIR"}

#: Text rows that run at small: calibrated on ASR and clean accuracy alone before any defense ran
#: (``results/calibration/attack-strength_text-*.json``); filled by the calibration.
CALIBRATED_TEXT_SMALL: dict[tuple[str, float, int], str] = {
    ("insert", 0.1, 1): "results/calibration/attack-strength_text-insert.json",
}
#: Text rows below MIN_ASR at small (their calibration files); no defense runs on them there.
WEAK_TEXT_AT_SMALL: dict[tuple[str, float, int], str] = {
    ("syntactic", 0.1, 1): "ASR 0.62 at small (results/calibration/attack-strength_text-syntactic.json)",
    ("duplicate", 0.1, 1): "ASR 0.022 at small (results/calibration/attack-strength_text-duplicate.json)",
    ("delete", 0.1, 1): "ASR 0.063 at small (results/calibration/attack-strength_text-delete.json)",
    ("semantic", 0.1, 1): "ASR 0.075 at small (results/calibration/attack-strength_text-semantic.json)",
}
EPSILONS_TABLE3 = (0.01, 0.05, 0.1, 0.2)  # paper 001 Table 3
TRIGGERS_TABLE4 = (1, 2, 3)  # paper 001 Table 4


def _text_001(attack: str, eps: float, n_triggers: int, table: str) -> Experiment:
    base = strength.text_backdoor(attack)
    params: dict[str, Any] = {"epsilon": paper(eps, f"001 {table}: eps N = {eps}")}
    if n_triggers != 1:
        params["n_triggers"] = paper(n_triggers, f"001 {table}: {n_triggers} inserted triggers")
    protocol = {"name": "remove-and-retrain", "params": {
        "removal": {"name": paper("top-k", "001 Sec. 4.2"), "params": {"factor": paper(1.5, "001 Sec. 4.1: 1.5 eps N removed")}}}}
    config = deep_merge(base.config, {"attack": {"params": params}, "protocol": protocol})
    key = (attack, eps, n_triggers)
    not_run: dict[str, NotRun] = {}
    if key in WEAK_TEXT_AT_SMALL:
        not_run["small"] = NotRun("attack-not-successful", WEAK_TEXT_AT_SMALL[key])
    elif key not in CALIBRATED_TEXT_SMALL:
        not_run["small"] = NotRun("deferred", "CPU budget: not calibrated at small")
    if key != ("insert", 0.1, 1):
        not_run["smoke"] = NotRun("deferred", "smoke: one text row checks the plumbing")
    tag = f"{attack}{'' if n_triggers == 1 else f'-{n_triggers}trig'}-eps{int(round(eps * 100)):02d}"
    return Experiment(
        name=f"t2-001-{tag}", description=f"Paper 001 {table}: {attack} text backdoor on SST-2, eps N = {eps}"
        f"{'' if n_triggers == 1 else f', {n_triggers} triggers'}, remove 1.5 eps N and retrain",
        config=config, methods=TABLE2_001_METHODS, scales=base.scales, paper_reference=f"paper 001 Sec. 4.2-4.3, {table}",
        # the attack-strength experiment's own setting: the same poisons and fine-tuned model
        seed_group=base.name if unwrap(config["attack"]) == unwrap(base.config["attack"]) else "", not_run=not_run,
        comparisons=(("Agglomerate", "PCA"), ("Agglomerate", "COSIN"), ("Agglomerate", "ONION"),
                     ("Greedy", "Agglomerate"), ("GAS (known target)", "Agglomerate")))


def tables2_4_001() -> list[Experiment]:
    """Paper 001 Tables 2-4 on SST-2: five attacks at eps N = 0.1 (Table 2), eps N in {0.01, 0.05,
    0.1, 0.2} for Insert and Syntactic (Table 3), 1-3 Insert triggers (Table 4); one experiment per
    distinct setting (Table 2's Insert row is Table 3's 0.1 and Table 4's 1-trigger row)."""
    keys: list[tuple[str, float, int, str]] = [(a, 0.1, 1, "Table 2") for a in strength.TEXT_ATTACKS_001]
    keys += [(a, e, 1, "Table 3") for a in ("insert", "syntactic") for e in EPSILONS_TABLE3 if e != 0.1]
    keys += [("insert", 0.1, t, "Table 4") for t in TRIGGERS_TABLE4 if t != 1]
    return [_text_001(a, e, t, table) for a, e, t, table in keys]


#: The text mitigation runs GAS only (GAS-L's mitigation is paper 000 Table 1's; CPU budget: each
#: mitigator is up to 3 retrains + a random control per trial).  Its ``asr_all_targets`` is the
#: number comparable with Table 2's columns (ASR on the attack test set after retraining).
TEXT_MITIGATORS = (MethodSpec("FIT-driven mitigation (GAS)", "gas"),)


def text_mitigation_001() -> list[Experiment]:
    """Paper 000's FIT-driven mitigation (Alg. 2 + Alg. 3: FIT with GAS picks the target among test
    inputs, GAS on it selects what to remove, retrain) as one more Table 2 method, on the calibrated
    Insert row's poisons and fine-tuned model (the attack-strength seed group)."""
    out = []
    for attack in strength.TEXT_ATTACKS_001:
        base = strength.text_backdoor(attack)
        exp = _mitigation(base, f"t2-001-{attack}-eps10-fit-mitigation", f"{attack} text backdoor on SST-2, eps N = 0.1",
                          target_source="ranker")
        # the text victim keeps its own small scale (checkpoints, trials): the vision _small() would retrain it
        scales = {"small": deep_merge(base.scales["small"], {"protocol": {"params": {
                      "max_rounds": ours(3, "CPU budget: <= 3 retrains")}}}),
                  "smoke": deep_merge(base.scales["smoke"], SMOKE_MITIGATION)}
        key = (attack, 0.1, 1)
        not_run: dict[str, NotRun] = {}
        if key in WEAK_TEXT_AT_SMALL:
            not_run["small"] = NotRun("attack-not-successful", WEAK_TEXT_AT_SMALL[key])
        elif key not in CALIBRATED_TEXT_SMALL:
            not_run["small"] = NotRun("deferred", "CPU budget: not calibrated at small")
        if attack != "insert":
            not_run["smoke"] = NotRun("deferred", "smoke: one text row checks the plumbing")
        out.append(dataclasses.replace(exp, scales=scales, not_run=not_run, methods=TEXT_MITIGATORS,
                                       paper_reference="paper 000 Alg. 2-3 on paper 001 Sec. 4.2's setting (Table 2)"))
    return out


TABLE2_001_EXPERIMENTS = tuple(f"t2-001-{a}-eps10" for a in strength.TEXT_ATTACKS_001)
TEXT_MITIGATION_EXPERIMENTS = tuple(f"t2-001-{a}-eps10-fit-mitigation" for a in strength.TEXT_ATTACKS_001)
TABLE3_001_EXPERIMENTS = tuple(f"t2-001-{a}-eps{int(round(e * 100)):02d}" for a in ("insert", "syntactic")
                               for e in EPSILONS_TABLE3)
TABLE4_001_EXPERIMENTS = ("t2-001-insert-eps10",) + tuple(f"t2-001-insert-{t}trig-eps10" for t in TRIGGERS_TABLE4 if t != 1)


SPEECH_DATASETS = ("fsdd", "held-out-speaker", "espeak")
SPEECH_TARGET_ID = ("fig7-target-id-speech", "fig7-target-id-speech-held-out-speaker", "fig7-target-id-speech-espeak")

ENTRIES = (
    Entry("000-fig1", "000", "Fig. 1", "Adversarial-set identification, CIFAR-10 + MNIST joint task, all estimators",
          ("fig1-cifar-mnist-joint",)),
    Entry("000-fig2-3", "000", "Figs. 2-3", "Training-loss and gradient-norm diagnostics",
          ("fig2-loss-tracking-cifar-mnist-joint", "fig3-layer-split-weber-one-pixel", "fig3-layer-split-weber-blend")),
    Entry("000-fig4", "000", "Fig. 4", "Influence filtering (top p% removed, retrain) vs random",
          tuple(f"fig4-filtering-{p}" for p in _fig4_pairs())),
    Entry("000-fig5", "000", "Fig. 5", "GAS influence densities of a target and a non-target",
          ("fig5-density-speech", "fig5-density-weber-blend")),
    Entry("000-fig6-8", "000", "Figs. 6 and 8", "Adversarial-set identification, speech and Weber vision backdoors",
          tuple(f"fig6-speech-{x}" for x in SPEECH_DATASETS) + tuple(
              f"fig8-weber-{t}-{p}" for t in ("blend", "one-pixel", "four-pixel") for p in PAIRS)),
    Entry("000-fig7", "000", "Fig. 7", "Target identification: FIT vs k-NN, certainty and random",
          ("fig7-target-id-weber-blend",) + SPEECH_TARGET_ID),
    Entry("000-table1", "000", "Table 1", "Target-driven mitigation, speech and vision backdoors",
          ("vision-backdoor-mitigation", "speech-backdoor-mitigation", "speech-backdoor-mitigation-held-out-speaker",
           "speech-backdoor-mitigation-espeak", "vision-backdoor-mitigation-e2e", "speech-backdoor-mitigation-e2e")),
    Entry("000-kappa", "000", "suppl. F.6", "FIT's sensitivity to kappa in {1, 5, 10, 25}",
          ("fig7-target-id-weber-blend",) + SPEECH_TARGET_ID),
    Entry("001-table1", "001", "Table 1", "Influence graph vs spectral signatures, clustering, SPECTRE, COSIN on CIFAR-10",
          TABLE1_001_EXPERIMENTS),
    Entry("001-table2", "001", "Table 2", "Influence graph vs PCA, Clustering, SPECTRA, COSIN, ONION on SST-2 "
          "text backdoors", TABLE2_001_EXPERIMENTS + TEXT_MITIGATION_EXPERIMENTS,
          methods_not_run=tuple(TEXT_NOT_OFFLINE.items())),
    Entry("001-table3", "001", "Table 3", "The effect of eps N on SST-2 (Insert, Syntactic)", TABLE3_001_EXPERIMENTS),
    Entry("001-table4", "001", "Table 4", "The effect of the number of Insert triggers on SST-2", TABLE4_001_EXPERIMENTS),
    Entry("001-table2-agnews", "001", "Table 2 (AG News)", "AG News rows of Table 2",
          missing=NotRun("unavailable-offline", "AG News is not in ../shared/datasets; the `ag-news` loader reads "
                                                "its standard CSV (train.csv / test.csv) from the data root")),
    Entry("001-table2-iwslt", "001", "Table 2 (IWSLT'14 En-De)", "IWSLT'14 En-De rows of Table 2",
          missing=NotRun("not-implemented", "machine translation (BLEU on attacked sequences) is not implemented")),
)


ADV_SET_EXPERIMENTS = ("fig1-cifar-mnist-joint", "fig6-speech-fsdd", "fig6-speech-held-out-speaker",
                       "fig6-speech-espeak") + tuple(
    f"fig8-weber-{t}-{p}" for t in ("blend", "one-pixel", "four-pixel") for p in PAIRS)
TARGET_ID_EXPERIMENTS = ("fig7-target-id-weber-blend",) + SPEECH_TARGET_ID
MITIGATION_EXPERIMENTS = ("vision-backdoor-mitigation", "speech-backdoor-mitigation",
                          "speech-backdoor-mitigation-held-out-speaker", "speech-backdoor-mitigation-espeak",
                          "vision-backdoor-mitigation-e2e", "speech-backdoor-mitigation-e2e")
FILTERING_EXPERIMENTS = tuple(f"fig4-filtering-{p}" for p in _fig4_pairs())
_NON_GAS = ("TracInCP", "TracIn", "Rn. TracIn", "TracIn-L", "Influence Func.", "Rn. Influence Func.",
            "Influence Func.-L", "Representer Pt.", "Rn. Representer Pt.")

CLAIMS = (
    Claim("renormalization", "Renormalization improves every influence estimator",
          "000 Sec. 4, Figs. 1, 6, 8",
          tuple(Beats(e, a, b, "auprc") for e in ADV_SET_EXPERIMENTS for a, b in RENORMALIZATION_PAIRS)),
    Claim("gas-best", "GAS identifies the adversarial set better than every other estimator",
          "000 Sec. 6.2, Figs. 1, 6, 8",
          tuple(Beats(e, "GAS", b, "auprc") for e in ADV_SET_EXPERIMENTS
                for b in _NON_GAS + ((DEEP_KNN.label,) if e != "fig1-cifar-mnist-joint" else ()))),
    Claim("gas-beats-trivial", "GAS beats the trivial scorers (ours: a check of the benchmark, not a paper claim)",
          "issue 14 item 5",
          tuple(Beats(e, "GAS", m.label, "auprc") for e in ADV_SET_EXPERIMENTS for m in TRIVIAL)),
    Claim("fit-best", "FIT (with GAS) identifies targets better than every baseline",
          "000 Sec. 6.3, Fig. 7",
          tuple(Beats(e, "FIT w/ GAS", m.label, "auprc") for e in TARGET_ID_EXPERIMENTS
                for m in TARGET_RANKERS if not m.label.startswith("FIT"))),
    Claim("kappa-stable", "FIT's AUPRC is stable across kappa in [1, 25] (paper: varies 0.2 % / 2.1 % with GAS-L / GAS on text)",
          "000 suppl. F.6 (stated in Sec. 6.3)",
          tuple(Stable(e, (f"FIT w/ {est}",) + tuple(f"FIT w/ {est}, κ={k}" for k in KAPPAS), "auprc", 0.021)
                for e in TARGET_ID_EXPERIMENTS for est in ("GAS", "GAS-L"))),
    Claim("filtering-renormalization", "Renormalization improves influence filtering at every percentage removed",
          "000 Sec. 4.5, Fig. 4",
          tuple(Beats(e, a, b, f"misclassification_rate@{pct}%") for e in FILTERING_EXPERIMENTS
                for a, b in (("Rn. Influence Func.", "Influence Func."), ("GAS", "TracInCP")) for pct in FIG4_PERCENTS)),
    Claim("filtering-beats-random", "Influence filtering, with or without renormalization, beats random removal",
          "000 Sec. 4.5, Fig. 4",
          tuple(Beats(e, m.label, "Random", f"misclassification_rate@{pct}%") for e in FILTERING_EXPERIMENTS
                for m in FILTERING_METHODS if m.label != "Random" for pct in FIG4_PERCENTS)),
    Claim("graph-beats-baselines", "Greedy and Agglomerate beat PCA, Clustering, SPECTRA and COSIN (lower ASR after "
          "retraining) on the semantic, input-aware and mixing attacks", "001 Sec. 4.1, Table 1",
          tuple(Beats(e, a, b, "attack_success_rate") for e in TABLE1_001_EXPERIMENTS
                if not e.startswith("t1-001-pixel") for a in ("Greedy", "Agglomerate")
                for b in ("PCA", "Clustering", "SPECTRA", "COSIN"))),
    Claim("agglomerate-beats-greedy", "Agglomerate's ASR after retraining is at most Greedy's", "001 Sec. 4.1, Table 1",
          tuple(Beats(e, "Agglomerate", "Greedy", "attack_success_rate") for e in TABLE1_001_EXPERIMENTS)),
    Claim("text-graph-beats-baselines", "Greedy and Agglomerate beat every baseline (PCA, Clustering, SPECTRA, COSIN, "
          "ONION) on the Semantic and Syntactic text attacks (lower ASR after retraining)", "001 Sec. 4.2, Table 2",
          tuple(Beats(f"t2-001-{atk}-eps10", a, b, "attack_success_rate") for atk in ("semantic", "syntactic")
                for a in ("Greedy", "Agglomerate") for b in ("PCA", "Clustering", "SPECTRA", "COSIN", "ONION"))),
    Claim("onion-insert-not-syntactic", "ONION works on Insert (lower ASR than random removal) but fails on "
          "Syntactic (ASR after retraining stays >= MIN_ASR; ours: the paper's 0.953 vs Att_suc 0.977)",
          "001 Sec. 4.2, Table 2",
          (Beats("t2-001-insert-eps10", "ONION", "Random", "attack_success_rate"),
           Bound("t2-001-syntactic-eps10", "ONION", "attack_success_rate", unwrap(MIN_ASR), below=False))),
    Claim("density-tail", "A target's influence vector has a heavier upper tail than a non-target's",
          "000 Sec. 5.2, Fig. 5",
          tuple(Bound(e, m.label, "upper_tail_gap", 0.0, below=False) for e in ("fig5-density-speech", "fig5-density-weber-blend")
                for m in MITIGATORS)),
    Claim("mitigation-clean", "Target-driven mitigation removes < 1 % of D_cl", "000 Sec. 6.4, Table 1",
          tuple(Bound(e, m.label, "pct_clean_removed", 1.0, below=True) for e in MITIGATION_EXPERIMENTS
                for m in MITIGATORS)),
    Claim("mitigation-asr", "Target-driven mitigation takes the attack success on the analysed target to 0",
          "000 Sec. 6.4, Table 1",
          tuple(Bound(e, m.label, "attack_success_rate", 0.0, below=True) for e in MITIGATION_EXPERIMENTS
                for m in MITIGATORS)),
)


@suites.register("paper", "The papers' tables and figures on real data (--only ENTRY; `list` shows each entry's status)")
def paper_suite() -> Suite:
    return Suite(
        name="paper",
        version=VERSION,
        description="Paper 000's (and later paper 001's) results on real data, one entry per table or figure",
        experiments=tuple(fig1() + fig2_3() + fig4() + fig5() + fig6_8() + fig7() + table1() + table1_001()
                          + tables2_4_001() + text_mitigation_001()),
        entries=ENTRIES,
        min_asr=unwrap(MIN_ASR),
        claims=CLAIMS,
    )
