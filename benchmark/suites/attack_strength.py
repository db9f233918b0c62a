"""The ``attack-strength`` suite: every attack of the two papers, measured alone (no defense).

One experiment per attack setting, each with the ``attack-success`` protocol and the single
method ``none``: attack success rate (ASR) over all targets and clean test accuracy.  This is
where the attack and training settings of each scale are frozen *before* any defense runs on
them (issue 5, part 6; DESIGN.md "calibrate attack strength on ASR alone").

Scales:

* ``full``  -- the papers' settings: dataset sizes, architectures at full width, epochs as in the
  reference code where known, else ours with the reason.
* ``small`` -- fits this project's 2-core CPU: one trial (craft + train) in < 10 min, measured.
  Fewer training examples, narrower models, fewer epochs; attack strength calibrated on ASR and
  clean accuracy alone with ``benchmark.tools.calibrate_attack``
  (``results/calibration/attack-strength_*.json``).
* ``smoke`` -- seconds; tiny sizes, one epoch; checks the plumbing only.

Measured small-scale ASR and clean accuracy (95 % Wilson intervals), wall times and the attacks
that stay below 0.9 ASR: ``results/attack_strength_small.md``.  Poison counts |D_adv| / |D_tr| of
every experiment at every scale, with the definition each attack uses:
``results/poison_rates.md`` (``python -m benchmark.tools.poison_rates``).

Paper 000's Weber backdoor is run on the plane -> bird pair only (paper 000 Sec. 6.1 also runs
auto -> dog: set ``y_targ=1, y_adv=5``); the speech backdoor on setup 4 -> 5 (paper 000 Fig. 5;
the paper runs all ten digits).
"""
from __future__ import annotations

from typing import Any

from benchmark.config import ours, paper, reference_code
from benchmark.experiment import Experiment, MethodSpec, Suite, deep_merge
from benchmark.registry import suites

#: 2 (issue 8): renamed from ``attacks``; one poison-rate definition (semantic's epsilon now counts
#: over |D_tr|: 500 poisons at small, was 250; full 0.03 = 1,500, was 250); input-aware's ``device``
#: key dropped (the run context's device is used).
VERSION = 2

NO_DEFENSE = (MethodSpec("no defense", "none"),)
PROTOCOL = {"name": "attack-success", "params": {}}
CIFAR = {"name": "cifar10", "params": {}}
IMAGE = {"name": "image", "params": {}}  # no normalisation (reference-code, original_code.md Sec. 4)

# -- training settings ---------------------------------------------------------------------------

#: Paper 000's ResNet9 training (reference-code fig01 config, original_code.md Sec. 4); the
#: Weber and speech configs are "not recoverable", so the fig01 recipe is used for them too (ours).
TRAIN_000 = {
    "epochs": reference_code(10, "fig01 num_epoch"),
    "batch_size": reference_code(64, "fig01 batch_size"),
    "optimizer": reference_code("adam"),
    "lr": reference_code(1e-3, "fig01 learning_rate"),
    "weight_decay": reference_code(1e-3, "fig01 weight_decay"),
    "decay_1d_params": reference_code(False, "_get_optim_params"),
    "schedule": reference_code("onecycle", "OneCycleLR per batch"),
    "checkpoints_per_epoch": reference_code(5, "NUM_SUBEPOCH"),
}

#: Paper 001 gives no vision training details; ResNet-32 is trained as in the setup it follows
#: (Tran / Hayase, attacks_datasets.md Sec. 6.1: SGD lr 0.1 Nesterov, wd 2e-4, batch 128, 200
#: epochs, steps at 75/150).  Deviations (ours): cosine decay stands in for the two steps (the
#: trainer has no multi-step schedule) and there is no crop/flip augmentation (the trainer has none).
TRAIN_001 = {
    "epochs": ours(200, "Hayase et al.'s ResNet-32 recipe (attacks_datasets.md Sec. 6.1); paper 001 states none"),
    "batch_size": ours(128, "Hayase / Tran recipe"),
    "optimizer": ours("sgd", "Hayase recipe"),
    "lr": ours(0.1, "Hayase recipe"),
    "momentum": ours(0.9, "Hayase / Tran recipe"),
    "nesterov": ours(True, "Hayase recipe"),
    "weight_decay": ours(2e-4, "Hayase / Tran recipe"),
    "decay_1d_params": ours(True, "plain torch SGD weight decay, as in Hayase's code"),
    "schedule": ours("cosine", "stands in for Hayase's x0.1 steps at epochs 75 / 150"),
    "checkpoints_per_epoch": ours(1, "200 epochs: one checkpoint per epoch keeps the trajectory storable"),
}

#: The speech CNN's training is "not recoverable" (original_code.md Sec. 4): paper 000's fig01
#: recipe with more epochs for a 10-class task on 2,700 recordings (ours).
TRAIN_SPEECH = {**TRAIN_000, "epochs": ours(30, "speech config not recoverable; 10 classes, 2,700 clips")}

# -- small-scale shared overrides ------------------------------------------------------------------

SMALL_TRAIN_000 = {
    "epochs": ours(8, "CPU budget: < 10 min per trial on 2 cores"),
}
SMALL_RESNET9 = {"width": ours(16, "CPU budget; 1/4 of the reference width 64")}
SMALL_RESNET32 = {
    "width": paper(16, "001 Sec. 4.1: {16, 32, 64} filters"),
    "blocks_per_stage": ours(1, "CPU budget: ResNet-8 (6n+2, n=1) instead of n=5 ResNet-32"),
}
SMALL_TRAIN_001 = {
    "epochs": ours(12, "CPU budget: < 10 min per trial on 2 cores"),
    "schedule": ours("onecycle", "few epochs: one-cycle converges faster than cosine"),
    "checkpoints_per_epoch": ours(5, "as paper 000's NUM_SUBEPOCH, for the influence defenses"),
}
SMALL_N_TRAIN_001 = ours(10_000, "CPU budget: 1/5 of CIFAR-10's 50,000 training images")

SMOKE_TRAIN = {"epochs": ours(1, "smoke"), "checkpoints_per_epoch": ours(1, "smoke"),
               "batch_size": ours(32, "smoke")}
SMOKE_TRIALS = ours(1, "smoke")


# -- experiment builders -----------------------------------------------------------------------------

def _cfg(dataset: dict, attack: dict, model: dict, train: dict, featurizer: dict | None = IMAGE,
         trials: Any = None) -> dict:
    cfg = {"dataset": dataset, "attack": attack, "model": model, "train": train, "protocol": PROTOCOL,
           "trials": trials if trials is not None else paper(10, "000 Sec. 6.4: >= 10 trials per setup")}
    if featurizer is not None:
        cfg["featurizer"] = featurizer
    return cfg



#: Smoke override shared by the ResNet9 CIFAR experiments (seconds; plumbing only).
SMOKE_RESNET9 = {
    "attack": {"params": {"n_train": ours(200, "smoke"), "n_adv": ours(10, "smoke"),
                          "n_test": ours(100, "smoke"), "n_targets": ours(50, "smoke")}},
    "model": {"params": {"width": ours(4, "smoke")}},
    "train": SMOKE_TRAIN, "trials": SMOKE_TRIALS,
}

def cifar_mnist_joint() -> Experiment:
    config = _cfg(
        CIFAR,
        {"name": "cifar-mnist-joint", "params": {
            "classes": paper((0, 6), "000 Sec. 4.1: frog vs airplane"),
            "adv_class": paper(0, "000 Sec. 4.1: MNIST 0s labelled airplane"),
            "digit": paper(0, "000 Sec. 4.1"),
            "n_adv": paper(150, "000 Sec. 4.1: 150 MNIST 0s"),
            "n_train": paper(None, "000 Sec. 4.1: all 10,000 frog + airplane images"),
            "mnist_split": ours("test", "only the MNIST test file is available"),
        }},
        {"name": "resnet9", "params": {"width": reference_code(64, "datasets/_cifar10_resnet.py")}},
        TRAIN_000,
        trials=paper(30, "000 Sec. 4.1: 30 trials"),
    )
    small = {
        "attack": {"params": {
            "n_train": ours(5000, "CPU budget: half of the 10,000 clean images"),
            "n_adv": ours(75, "keeps paper 000's 1.5 % poison ratio at n_train = 5,000; ASR checked: "
                              "results/calibration/attack-strength_cifar-mnist-joint.json"),
        }},
        "model": {"params": SMALL_RESNET9},
        "train": SMALL_TRAIN_000,
        "trials": ours(2, "CPU budget"),
    }
    smoke = SMOKE_RESNET9
    return Experiment(
        name="cifar-mnist-joint",
        description="CIFAR-10 frog vs airplane + MNIST 0s labelled airplane, ResNet9 (paper 000 Sec. 4.1, Fig. 1)",
        config=config, methods=NO_DEFENSE, scales={"small": small, "smoke": smoke},
        paper_reference="paper 000 Sec. 4.1 (Fig. 1)",
    )


def weber(trigger: str, small_attack: dict) -> Experiment:
    config = _cfg(
        CIFAR,
        {"name": "weber-backdoor", "params": {
            "y_targ": paper(0, "000 Sec. 6.1 pair plane -> bird"),
            "y_adv": paper(2, "000 Sec. 6.1 pair plane -> bird"),
            "n_adv": paper(150, "000 Sec. 6.1: |D_adv| = 150"),
            "epsilon": paper(None, "000 Sec. 6.1 gives a count, not a rate"),
            "n_train": paper(None, "000 Sec. 6.1: |D_tr| = 10,000, the two classes' training images"),
            "mode": reference_code("replace", "poisoned in place"),
            "trigger": paper(trigger, "000 Sec. 6.1: Weber et al.'s triggers"),
            "delta": reference_code(1.0, "BACKDOOR_DELTA default; the per-experiment value is in the missing supplement"),
        }},
        {"name": "resnet9", "params": {"width": reference_code(64, "datasets/_cifar10_resnet.py")}},
        TRAIN_000,
    )
    small = {
        "attack": {"params": {"n_train": ours(5000, "CPU budget: half of the 10,000 images"),
                              **small_attack}},
        "model": {"params": SMALL_RESNET9},
        "train": SMALL_TRAIN_000,
        "trials": ours(2, "CPU budget"),
    }
    smoke = SMOKE_RESNET9
    return Experiment(
        name=f"weber-{trigger}",
        description=f"Weber et al. {trigger} backdoor, CIFAR-10 airplane -> bird, ResNet9 (paper 000 Sec. 6.1)",
        config=config, methods=NO_DEFENSE, scales={"small": small, "smoke": smoke},
        paper_reference="paper 000 Sec. 6.1 (2), Table 1 'vision backdoor'",
    )


#: Small-scale Weber attack strength (n_train = 5,000, ResNet9 width 16, 8 epochs), calibrated on
#: ASR and clean accuracy alone, before any defense ran.  At paper 000's 1.5 % and the reference
#: delta = 1 the small model learns none of the three triggers (ASR 9-41 %), so each is
#: strengthened: the pixel triggers to (near) saturation, the one-pixel trigger also with 4x the
#: poisons (at 150 poisons its ASR was 33-76 %).
WEBER_SMALL: dict[str, dict] = {
    "one-pixel": {
        "delta": ours(1.7320508, "calibrated on ASR: results/calibration/attack-strength_weber-one-pixel*.json; "
                                 "sqrt(3): +1 per channel, the pixel saturates to white"),
        "n_adv": ours(300, "calibrated on ASR: results/calibration/attack-strength_weber-one-pixel_n-adv.json "
                           "(6 %; paper 000: 1.5 %)"),
    },
    "four-pixel": {
        "delta": ours(3.0, "calibrated on ASR: results/calibration/attack-strength_weber-four-pixel*.json"),
        "n_adv": ours(75, "keeps paper 000's 1.5 % poison ratio at n_train = 5,000"),
    },
    "blend": {
        "delta": ours(4.0, "calibrated on ASR: results/calibration/attack-strength_weber-blend*.json"),
        "n_adv": ours(75, "keeps paper 000's 1.5 % poison ratio at n_train = 5,000"),
    },
}


def speech() -> Experiment:
    config = _cfg(
        {"name": "fsdd", "params": {}},
        {"name": "speech-noise-burst", "params": {
            "y_targ": paper(4, "000 Fig. 5 setup 4 -> 5"),
            "epsilon": paper(0.01, "000 Sec. 6.1: 1 % backdoors"),
            "mode": paper("add", "000 Sec. 6.1: backdoored instances in addition to D_cl"),
        }},
        {"name": "speech-cnn", "params": {"width_div": reference_code(2, "USE_FULL_SIZE=False")}},
        TRAIN_SPEECH,
        featurizer={"name": "log-mel", "params": {}},
    )
    small = {
        "attack": {"params": {"epsilon": paper(0.01, "000 Sec. 6.1; ASR checked at small scale: "
                                                     "results/calibration/attack-strength_speech-noise-burst.json")}},
        "model": {"params": {"width_div": ours(4, "CPU budget: quarter width")}},
        "train": {"epochs": ours(15, "CPU budget")},
        "trials": ours(5, "FSDD has 30 test recordings per digit: more trials pool more target evaluations"),
    }
    smoke = {
        "model": {"params": {"width_div": ours(8, "smoke")}},
        "train": SMOKE_TRAIN, "trials": SMOKE_TRIALS,
    }
    return Experiment(
        name="speech-noise-burst",
        description="Noise burst over the start of spoken 4s, labelled 5; FSDD log-mel, speech CNN (paper 000 Sec. 6.1)",
        config=config, methods=NO_DEFENSE, scales={"small": small, "smoke": smoke},
        paper_reference="paper 000 Sec. 6.1 (1), Fig. 5, Table 1 'speech backdoor'",
    )


#: Issue 14 item 2b: on FSDD's standard split every test clip's influence tail is dominated by its
#: own speaker's training clips; this variant trains on five speakers and takes targets and
#: non-targets from the sixth.  The held-out speaker is fixed by a rule chosen before any run
#: (the first in alphabetical order), not by its results.
HELD_OUT_SPEAKER = ours("george", "issue 14 item 2b: the alphabetically first FSDD speaker, fixed before any run")


def speech_held_out() -> Experiment:
    base = speech()
    config = {**base.config, "dataset": {"name": "fsdd", "params": {"held_out_speaker": HELD_OUT_SPEAKER}}}
    small = deep_merge(base.scales["small"], {"attack": {"params": {"epsilon": ours(
        0.01, "paper 000 Sec. 6.1's 1 %; ASR checked at small scale: "
              "results/calibration/attack-strength_speech-noise-burst-held-out-speaker.json")}}})
    return Experiment(
        name="speech-noise-burst-held-out-speaker",
        description="The speech backdoor on a speaker-held-out FSDD split (train: five speakers; targets and "
                    "non-targets: the sixth)",
        config=config, methods=NO_DEFENSE, scales={**base.scales, "small": small},
        paper_reference="paper 000 Sec. 6.1 (1) on a speaker-held-out split (ours, issue 14 item 2b)")


def speech_espeak() -> Experiment:
    """The speech backdoor on spoken digits synthesised with many voices (issue 14 item 2b (c):
    closer to Liu et al.'s synthesised speech than FSDD's six speakers)."""
    base = speech()
    config = {**base.config, "dataset": {"name": "espeak-digits", "params": {
        "n_speakers": ours(30, "issue 14 item 2b: many voices (FSDD has 6)"),
        "clips_per_digit": ours(10, "30 x 10 x 10 = 3,000 clips, FSDD's size"),
        "n_test": ours(2, "FSDD's test share (1/10 of each speaker's clips)"),
        "seed": ours(0)}}}
    small = deep_merge(base.scales["small"], {"attack": {"params": {"epsilon": ours(
        0.01, "paper 000 Sec. 6.1's 1 %; ASR checked at small scale: "
              "results/calibration/attack-strength_speech-noise-burst-espeak.json")}}})
    return Experiment(
        name="speech-noise-burst-espeak",
        description="The speech backdoor on espeak-ng-synthesised spoken digits (30 synthetic speakers)",
        config=config, methods=NO_DEFENSE, scales={**base.scales, "small": small},
        paper_reference="paper 000 Sec. 6.1 (1) on synthesised speech (ours, issue 14 item 2b)")


def _paper001(name: str, attack: str, params: dict, small_params: dict | None = None,
              smoke_params: dict | None = None, description: str = "",
              reference: str = "paper 001 Sec. 4.1") -> Experiment:
    pair = {
        "y_targ": paper(0, "001 Sec. 4.1 pair (airplane, bird)"),
        "y_adv": paper(2, "001 Sec. 4.1 pair (airplane, bird)"),
    }
    config = _cfg(
        CIFAR,
        {"name": attack, "params": {**pair, **params}},
        {"name": "resnet32", "params": {"width": paper(16, "001 Sec. 4.1: {16, 32, 64} filters"),
                                        "blocks_per_stage": paper(5, "001 Sec. 4.1: 5 blocks per group")}},
        TRAIN_001,
        trials=ours(5, "paper 001 reports no trial count"),
    )
    small = {
        "attack": {"params": {"n_train": SMALL_N_TRAIN_001, **(small_params or {})}},
        "model": {"params": SMALL_RESNET32},
        "train": SMALL_TRAIN_001,
        "trials": ours(2, "CPU budget"),
    }
    smoke = {
        "attack": {"params": {"n_train": ours(256, "smoke"), "n_test": ours(100, "smoke"),
                              "n_targets": ours(50, "smoke"), **(smoke_params or {})}},
        "model": {"params": {"width": ours(4, "smoke"), "blocks_per_stage": ours(1, "smoke")}},
        "train": SMOKE_TRAIN, "trials": SMOKE_TRIALS,
    }
    return Experiment(name=name, description=description, config=config, methods=NO_DEFENSE,
                      scales={"small": small, "smoke": smoke}, paper_reference=reference)


EPS_001 = paper(0.05, "001 Sec. 4.1: eps N = 0.05 (also 0.1)")


# -- paper 001 Sec. 4.2: SST-2 text backdoors ---------------------------------------------------------

#: Sentence-level SST-2 (Hidden Killer's split: 6,920 train / 1,821 test): the Syntactic attack's
#: released paraphrases exist for it only, so all five attacks use it (ours; the paper says "SST2").
SST2_SENTENCES = {"name": "sst2-syntactic", "params": {}}
#: Paper 001 fine-tunes BERT-base (Sec. 4.2); offline, all-MiniLM-L6-v2 stands in (README deviation).
TEXT_MODEL = {"name": "hf-text", "params": {
    "pretrained": ours("all-MiniLM-L6-v2", "offline stand-in for paper 001's BERT-base (Sec. 4.2); "
                                           "--model-path bert-base-uncased=DIR with pretrained bert-base-uncased")}}
TOKENIZER = {"name": "tokenizer", "params": {
    "pretrained": ours("all-MiniLM-L6-v2", "the model's own tokenizer"),
    "max_length": ours(128, "covers every SST-2 sentence (longest: 80 WordPieces)")}}
#: Paper 001: "we tune ... dropout, learning rate, training steps and warmup on the dev set and use
#: the Adam optimizer" (no values); OpenBackdoor's defaults for SST-2 + BERT (attacks_datasets.md Sec. 7).
TRAIN_TEXT = {
    "epochs": reference_code(5, "OpenBackdoor default epochs"),
    "batch_size": reference_code(32, "OpenBackdoor default batch size"),
    "optimizer": paper("adam", "001 Sec. 4.2: Adam"),
    "lr": reference_code(2e-5, "OpenBackdoor default lr"),
    "weight_decay": ours(0.0, "OpenBackdoor's AdamW default weight decay is 0"),
    "schedule": ours("onecycle", "stands in for OpenBackdoor's linear warm-up and decay"),
    "checkpoints_per_epoch": ours(1, "one checkpoint per epoch (GAS / COSIN trajectories)"),
}
#: Small: a third of the training sentences, the lower half of the encoder frozen, a higher
#: learning rate for few steps (ours, fixed before any defense ran; calibrated on ASR alone).
SMALL_TEXT = {
    "attack": {"params": {"n_train": ours(2000, "CPU budget: 2,000 of 6,920 training sentences (1,000 with 100 poisons: Insert ASR 0.48, "
                                                "results/calibration/attack-strength_text-insert_n1000.json)")}},
    "featurizer": {"params": {"max_length": ours(64, "CPU budget: > 99 % of SST-2 sentences fit (99th pct 55)")}},
    "model": {"params": {"freeze_layers": ours(3, "CPU budget: embeddings and encoder layers 1-3 of 6 frozen "
                                                  "(MiniLM cut to 3 layers stayed at chance in 3 epochs, exploratory)")}},
    "train": {"epochs": ours(3, "CPU budget"), "lr": ours(1e-4, "few steps on a small model (ours)")},
    "trials": ours(2, "CPU budget"),
}
SMOKE_TEXT = {
    "attack": {"params": {"n_train": ours(96, "smoke"), "n_test": ours(64, "smoke"), "n_targets": ours(32, "smoke")}},
    "featurizer": {"params": {"max_length": ours(24, "smoke")}},
    "model": {"params": {"num_layers": ours(1, "smoke: one encoder layer")}},
    "train": {**SMOKE_TRAIN, "lr": ours(1e-4, "smoke")}, "trials": SMOKE_TRIALS,
}
#: Paper 001 Sec. 4.2's attacks -> registered attack names.
TEXT_ATTACKS_001 = {"insert": "text-insert", "duplicate": "text-duplicate", "delete": "text-delete",
                    "semantic": "text-semantic", "syntactic": "text-syntactic"}
EPS_TEXT = paper(0.1, "001 Sec. 4.2: eps N = 0.1")


def text_backdoor(attack: str, params: dict | None = None, small_params: dict | None = None) -> Experiment:
    """Paper 001 Sec. 4.2's ``attack`` on SST-2 sentences, dirty-label to positive, eps N = 0.1."""
    config = _cfg(SST2_SENTENCES, {"name": TEXT_ATTACKS_001[attack], "params": {"epsilon": EPS_TEXT, **(params or {})}},
                  TEXT_MODEL, TRAIN_TEXT, featurizer=TOKENIZER, trials=ours(5, "paper 001 reports no trial count"))
    small = deep_merge(SMALL_TEXT, {"attack": {"params": small_params or {}}})
    return Experiment(name=f"text-{attack}", description=f"Paper 001 Sec. 4.2 {attack} text backdoor on SST-2, "
                      f"MiniLM-L6 fine-tuned", config=config, methods=NO_DEFENSE,
                      scales={"small": small, "smoke": SMOKE_TEXT}, paper_reference="paper 001 Sec. 4.2")


def spectral_pixel() -> Experiment:
    return _paper001("spectral-pixel", "spectral-pixel", {"epsilon": EPS_001},
                     small_params={"epsilon": paper(0.05, "001 Sec. 4.1; ASR checked at small scale: "
                                                          "results/calibration/attack-strength_spectral-pixel.json")},
                     description="Tran et al. pixel backdoor (random shape/position/colour), airplane -> bird, ResNet-32")


def semantic() -> Experiment:
    return _paper001(
        "semantic", "semantic",
        {"epsilon": ours(0.03, "paper 001 Sec. 4.1 uses 0.05 of |D_tr| (Sec. 3.3: eps N poisons), i.e. 2,500 "
                               "of CIFAR-10's 5,000 airplanes; only 1,535 airplanes show any green (measured on "
                               "the CIFAR-10 copy), so 0.03 (1,500) is the largest whole-percent rate the "
                               "programmatic feature supports"),
         "feature": ours("green", "Bagdasaryan's green cars, programmatic")},
        small_params={"epsilon": paper(0.05, "001 Sec. 4.1, of |D_tr| = 10,000: 500 poisons; calibrated on ASR: "
                                             "results/calibration/attack-strength_semantic*.json (500 poisons: ASR "
                                             "0.70; 250 poisons, eps 0.025: 0.72)")},
        smoke_params={"epsilon": ours(None, "smoke"), "n_adv": ours(10, "smoke")},
        description="Semantic backdoor (greenest airplanes relabelled bird), ResNet-32")


def composite() -> Experiment:
    return _paper001("composite", "composite", {"epsilon": EPS_001},
                     small_params={"epsilon": paper(0.1, "001 Sec. 4.1's larger rate; calibrated on ASR: "
                                                         "results/calibration/attack-strength_composite*.json (0.05: ASR 0.44, 0.1: 0.59)")},
                     description="Lin et al. composite backdoor: airplane/automobile half-mix labelled bird, ResNet-32")


def input_aware() -> Experiment:
    return _paper001(
        "input-aware", "input-aware", {"epsilon": EPS_001},
        small_params={
            "gen_channels": ours((8, 16, 32), "CPU budget: quarter of the reference (32, 64, 128)"),
            "classifier_width": ours(16, "CPU budget"),
            "batch_size": ours(64, "CPU budget"),
            "mask_steps": ours(200, "CPU budget"),
            "gen_steps": ours(1000, "CPU budget"),
            "gen_n_images": ours(10_000, "CPU budget"),
            "epsilon": paper(0.05, "001 Sec. 4.1; ASR checked at small scale (generator training included, "
                                   "one trial < 10 min): results/calibration/attack-strength_input-aware.json"),
        },
        smoke_params={"gen_channels": ours((4,), "smoke"), "classifier_width": ours(4, "smoke"),
                      "batch_size": ours(16, "smoke"), "mask_steps": ours(2, "smoke"),
                      "gen_steps": ours(2, "smoke"), "gen_n_images": ours(64, "smoke")},
        description="Nguyen & Tran input-aware backdoor (trained generator + mask, static poisons), ResNet-32")


def badnets() -> Experiment:
    return _paper001(
        "badnets", "badnets",
        {"y_targ": ours(None, "BackdoorBench all2one: every class but y_adv is poisoned"), "y_adv": ours(0, "BackdoorBench default target 0"),
         "epsilon": ours(0.1, "BackdoorBench pratio 0.1")},
        small_params={"epsilon": ours(0.1, "BackdoorBench pratio; ASR checked at small scale: "
                                           "results/calibration/attack-strength_badnets.json")},
        description="BadNets 3x3 white corner patch, all-to-one -> airplane, ResNet-32 (the field's baseline)",
        reference="Gu et al. 2017 in BackdoorBench's form (attacks_datasets.md Sec. 6.2); not in paper 000/001")


@suites.register("attack-strength",
                 "Every attack alone (no defense): ASR and clean accuracy at full / small / smoke scale")
def attack_strength_suite() -> Suite:
    return Suite(
        name="attack-strength",
        version=VERSION,
        description="Attack success and clean accuracy of every attack of papers 000 and 001, no defense",
        experiments=(
            cifar_mnist_joint(),
            weber("one-pixel", WEBER_SMALL["one-pixel"]),
            weber("four-pixel", WEBER_SMALL["four-pixel"]),
            weber("blend", WEBER_SMALL["blend"]),
            speech(), speech_held_out(), speech_espeak(),
            spectral_pixel(), semantic(), composite(), input_aware(), badnets(),
            *(text_backdoor(a) for a in TEXT_ATTACKS_001),
        ),
    )
