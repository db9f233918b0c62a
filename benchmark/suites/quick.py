"""The ``quick`` suite: paper 000's Sec. 4.1 experiment (Fig. 1) in miniature, on the embedded
digits, so a new user sees the whole pipeline in minutes with no data root."""
from __future__ import annotations

from benchmark.config import ours, paper, reference_code
from benchmark.experiment import Experiment, MethodSpec, Suite
from benchmark.registry import suites

VERSION = 1

TOY_CONFIG = {
    "dataset": {"name": "digits", "params": {}},
    "attack": {
        "name": "inverted-digit",
        "params": {
            "clean_classes": paper((6, 9), "000 Sec. 4.1 criterion applied to digits: results/calibration/quick_toy_pair.json"),
            "adv_digit": ours(3, "inverted 3s stand in for MNIST 0s"),
            "adv_label": paper(1, "000 Sec. 4.1: the MNIST 0s are labelled airplane"),
            "adv_fraction": paper(0.015, "000 Sec. 4.1: |D_adv| = 150 for |D_cl| = 10,000"),
            "n_targets": ours(20),
        },
    },
    "model": {"name": "mlp", "params": {"hidden": ours(32), "depth": ours(1)}},
    "train": {
        "epochs": reference_code(10, "fig01 config num_epoch"),
        "batch_size": ours(32, "reference uses 64 on 8,333 examples; the toy has ~275"),
        "optimizer": reference_code("adam"),
        "lr": ours(1e-2, "reference 1e-3 for ResNet9; raised for the 10-epoch toy MLP"),
        "weight_decay": reference_code(1e-3),
        "decay_1d_params": reference_code(False),
        "schedule": reference_code("onecycle"),
        "checkpoints_per_epoch": reference_code(5, "NUM_SUBEPOCH"),
    },
    "protocol": {"name": "adversarial-set", "params": {}},
    "trials": ours(10),
}

ESTIMATORS = (
    MethodSpec("TracInCP", "tracincp"),
    MethodSpec("GAS", "gas"),
)


@suites.register("quick", "Paper 000 Fig. 1 in miniature on the embedded digits (no data needed, ~1 min)")
def quick_suite() -> Suite:
    return Suite(
        name="quick",
        version=VERSION,
        description="Adversarial-set identification on the inverted-digit toy (paper 000 Sec. 4.1 / Fig. 1)",
        experiments=(
            Experiment(
                name="inverted-digit",
                description="Inverted 3s labelled as 9 inside a 6-vs-9 digits task; AUPRC of D_adv for a random target",
                config=TOY_CONFIG,
                methods=ESTIMATORS,
                scales={"smoke": {"trials": ours(3)}},
                comparisons=(("GAS", "TracInCP"),),
                paper_reference="paper 000 Sec. 4.1, Fig. 1 (CIFAR-10 frog vs airplane + 150 MNIST 0s)",
            ),
        ),
    )
