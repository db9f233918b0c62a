"""Paper 000 Sec. 4.1 (Fig. 1): joint CIFAR-10 frog vs airplane + MNIST 0s labelled airplane.

The clean set is every CIFAR-10 training image of the two classes (|D_cl| = 10,000); the
adversarial set is ``n_adv`` MNIST 0s labelled airplane; targets are *other* MNIST 0s (disjoint
from D_adv), whose label in this task is airplane, so ``y_adv`` equals their label (the
reference code's ``check_success`` asserts the target is predicted airplane).  Binary labels:
lower original CIFAR id -> 0 (airplane 0 -> 0, frog 6 -> 1; reference-code).

MNIST images are padded by 2 pixels to 32 x 32 and repeated over 3 channels (reference-code
``fig01_cifar_vs_mnist``).  Only the MNIST *test* file is available to this project, so by
default D_adv and the targets are drawn disjointly from its 0s (980 images) -- ``mnist_split``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from attacks.patterns import CLEAN, POISON, PoisonCounts, assemble, choose, make_task, subsample, task_size
from benchmark.api import Attack, AttackedData, RunContext
from benchmark.data.types import RawDataset, Split
from benchmark.registry import attacks


@dataclass(frozen=True)
class JointMnistConfig:
    """Defaults from paper 000 Sec. 4.1 / reference-code ``configs/cifar10-mnist.yaml``.

    classes      (airplane 0, frog 6): paper 000 Sec. 4.1; reference-code targ_cls 6, pois_cls 0.
    adv_class    CIFAR class whose label the MNIST images get: airplane (0) (paper 000 Sec. 4.1).
    digit        MNIST digit used: 0 (paper 000 Sec. 4.1; reference-code pois_cls 0).
    n_adv        150 (paper 000 Sec. 4.1; reference-code other_cnt 150).  A count *added* to the
                 clean set: |D_tr| = n_train + n_adv (see ``epsilon_definition``).
    n_train      CIFAR clean images kept, |D_cl| (unlike the trigger backdoors, where n_train is
                 |D_tr|); ``None`` = all 10,000 (paper 000 Sec. 4.1; the reference code moves
                 every 6th to validation, leaving ~8,333 -- the harness's business).
    n_test       clean CIFAR test images kept; ``None`` = all 2,000 (ours).
    n_targets    MNIST 0s held out as targets; ``None`` = all remaining ones (ours; the paper
                 draws one random MNIST test 0 per trial).
    mnist_split  "test": D_adv and targets both from the MNIST test split (ours: the only file
                 available); "train": D_adv from the training split, targets from the test split
                 (the paper's setting, when the training file exists).
    pad          pixels of zero padding on each side of the 28 x 28 MNIST image: 2 (reference-code).
    """

    classes: tuple[int, int] = (0, 6)
    adv_class: int = 0
    digit: int = 0
    n_adv: int = 150
    n_train: int | None = None
    n_test: int | None = None
    n_targets: int | None = None
    mnist_split: str = "test"
    pad: int = 2

    def __post_init__(self) -> None:
        if len(set(self.classes)) != 2:
            raise ValueError(f"classes must be two distinct CIFAR-10 class ids, got {self.classes}")
        if self.adv_class not in self.classes:
            raise ValueError(f"adv_class {self.adv_class} must be one of classes {self.classes}")
        if self.mnist_split not in ("test", "train"):
            raise ValueError(f"mnist_split must be 'test' or 'train', got {self.mnist_split!r}")
        if self.n_adv < 1 or self.pad < 0:
            raise ValueError("n_adv must be >= 1 and pad >= 0")


def mnist_to_cifar_shape(x: torch.Tensor, pad: int, channels: int) -> torch.Tensor:
    """N x 1 x 28 x 28 -> N x channels x (28 + 2 pad) x (28 + 2 pad): zero padding, channel repeat."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected MNIST images N x 1 x H x W, got {tuple(x.shape)}")
    return F.pad(x, (pad, pad, pad, pad)).repeat(1, channels, 1, 1)


@attacks.register("cifar-mnist-joint",
                  "CIFAR-10 frog vs airplane + 150 MNIST 0s labelled airplane (paper 000 Sec. 4.1, Fig. 1)")
class CifarMnistJoint(Attack):
    Config = JointMnistConfig
    modalities = ("image",)
    extra_datasets = ("mnist",)
    epsilon_definition = (
        "count added to the clean set (paper 000 Sec. 4.1: |D_cl| = 10,000 & |D_adv| = 150): "
        "|D_tr| = n_train + n_adv, eps = n_adv / (n_train + n_adv) (paper: 150 / 10,150 = 1.48 %)")

    def poison_counts(self, class_sizes: Sequence[int]) -> PoisonCounts:
        """What :meth:`craft` would produce on a CIFAR training split with ``class_sizes[k]``
        images of class ``k``: |D_cl| = n_train (or the two classes' images) plus n_adv MNIST."""
        c = self.config
        n_clean = c.n_train if c.n_train is not None else task_size(class_sizes, c.classes)
        return PoisonCounts(n_clean + c.n_adv, c.n_adv)

    def craft(self, data: RawDataset, rng: np.random.Generator, context: RunContext) -> AttackedData:
        self.check_dataset(data)
        mnist = self.require_extra(context, "mnist")
        c = self.config
        task = make_task(data, c.classes)
        ya = task.label(c.adv_class)
        channels, h, w = task.train.inputs.shape[1:]

        def zeros(split: Split) -> torch.Tensor:
            return torch.nonzero(split.labels == c.digit).ravel()

        test_zeros = zeros(mnist.test)
        if c.mnist_split == "test":
            order = choose(rng, test_zeros.numpy(), len(test_zeros), "MNIST digits")
            adv_ids, target_pool = order[:c.n_adv], order[c.n_adv:]
            if len(adv_ids) < c.n_adv or len(target_pool) == 0:
                raise ValueError(f"MNIST test split has {len(test_zeros)} images of digit {c.digit}; "
                                 f"need more than n_adv={c.n_adv} to leave targets")
            adv_src = mnist.test
        else:
            adv_ids = choose(rng, zeros(mnist.train).numpy(), c.n_adv, f"MNIST training {c.digit}s")
            target_pool, adv_src = test_zeros, mnist.train
        n_t = len(target_pool) if c.n_targets is None else c.n_targets
        if n_t > len(target_pool):
            raise ValueError(f"n_targets={n_t} but only {len(target_pool)} MNIST {c.digit}s remain")
        target_ids = target_pool[:n_t] if c.mnist_split == "test" else \
            choose(rng, target_pool.numpy(), n_t, "MNIST test digits")

        adv_x = mnist_to_cifar_shape(adv_src.inputs[adv_ids], c.pad, channels)
        tgt_x = mnist_to_cifar_shape(mnist.test.inputs[target_ids], c.pad, channels)
        if adv_x.shape[1:] != (channels, h, w):
            raise ValueError(f"padded MNIST images are {tuple(adv_x.shape[1:])}, CIFAR images "
                             f"{(channels, h, w)}; adjust pad")

        clean, clean_idx = subsample(task.train, c.n_train, rng, "clean CIFAR training images")
        asm = assemble([
            (clean.inputs, clean.labels, CLEAN, clean_idx),
            (adv_x, torch.full((c.n_adv,), ya), POISON, adv_ids),
        ], rng)
        test, test_keep = subsample(task.test, c.n_test, rng, "clean test images")
        info = {
            "n_adv": c.n_adv, "n_clean": len(clean), "n_train": len(asm.train),
            "n_targets": n_t, "mnist_split": c.mnist_split, "adv_label_task": ya,
            "kind": asm.kind,
            "adv_mnist_index": adv_ids,  # into mnist.<mnist_split>
            "target_mnist_test_index": target_ids,
            "train_raw_index": torch.where(
                asm.kind == CLEAN,
                task.train_index[torch.where(asm.kind == CLEAN, asm.origin, torch.zeros_like(asm.origin))],
                torch.full_like(asm.origin, -1)),
            "test_raw_index": task.test_index[test_keep],
        }
        return AttackedData(
            train=asm.train, is_adv=asm.is_adv, test=test,
            targets=Split(tgt_x, torch.full((n_t,), ya)),
            y_adv=torch.full((n_t,), ya), non_targets=test,
            num_classes=2, classes=[f"{task.classes[k]}" + (f" & MNIST {c.digit}" if k == ya else "")
                                    for k in range(2)],
            targets_clean=None, modality="image", info=info,
        )
