"""Shared assembly of dirty-label backdoor datasets (class selection, poison selection, targets).

Terminology follows paper 000 Sec. 6.1: ``y_targ -> y_adv`` are the target's true and
adversarial labels.  Paper 001 Sec. 4.1 writes the same pair as "(attack, target)" labels, e.g.
(airplane, bird) is ``y_targ = airplane (0)``, ``y_adv = bird (2)``.  A poison is a training
input of class ``y_targ`` carrying the trigger and labelled ``y_adv``; a target is a test input
of class ``y_targ`` carrying the trigger.

Poison rate (one definition for every attack built on this recipe): ``epsilon = |D_adv| / |D_tr|``
of the set the victim is *trained* on, ``|D_tr| = n_train`` exactly (clean + poisons + auxiliary
attacker examples), so ``n_adv = round(epsilon * n_train)``; with ``mode="add"`` the poisons are
copies counted inside ``|D_tr|`` (``n_adv = epsilon * (n_clean + n_adv + n_aux)``), never added on
top.  This is paper 001 Sec. 3.3's "epsilon N poisoned training examples in the training set"
(N = |D_train|, Sec. 3.2.1 Eq. 2) and paper 000's "1% of D_tr" (Sec. 3.2; Sec. 6.1: "|D_adv| =
150 and |D_tr| = 10,000 (1.5% backdoors)").  ``n_adv`` may be given as a count instead.  The
only attacks that count otherwise are paper 000 Sec. 4.1's ``cifar-mnist-joint`` and its toy
``inverted-digit``, which *add* |D_adv| to a given clean set (the paper's "|D_cl| = 10,000 &
|D_adv| = 150").  Every attack states its rule in the class attribute ``epsilon_definition``.

``mode="replace"``: each poison replaces its clean original, which leaves the training set
(reference-code: Tran et al. delete the originals; Weber/Hammoudeh poison in place).
``mode="add"``: poisons are triggered *copies*; the clean part (``n_train - n_adv - n_aux``
images) is drawn uniformly from all training images, so a poison's clean original may also be
present (D_tr = D_cl ⊔ D_adv, paper 000 notation) and, with ``n_train=None``, ``n_adv + n_aux``
random clean images are left out to keep ``|D_tr|`` at the training split's size.
With ``replace`` and ``epsilon=0.1`` of a balanced 10-class set, every training image of
``y_targ`` would become a poison, which is why the paper-001 attacks default to ``add``.

``info`` of the crafted data: JSON-able scalars plus int64 index tensors (``kind``: CLEAN /
POISON / AUX per training example; ``train_raw_index``, ``poison_raw_index``,
``target_test_raw_index``, ``test_raw_index``: ids into the raw dataset's splits, -1 = none).
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from benchmark.api import Attack, AttackedData, RunContext
from benchmark.data.types import RawDataset, RawInputs, Split, concat, select

MODES = ("add", "replace")

#: Codes in ``info["kind"]`` (one per training example).
CLEAN, POISON, AUX = 0, 1, 2


# -- class selection -----------------------------------------------------------------------

@dataclass
class Task:
    """The clean task after class selection; task label ``k`` is original class ``class_ids[k]``
    (original ids sorted ascending, so in a binary task the lower original id is 0 -- the
    reference code's rule)."""

    train: Split
    test: Split
    class_ids: list[int]
    classes: list[str]
    train_index: torch.Tensor  # raw index into data.train of every task training example
    test_index: torch.Tensor

    def label(self, original: int) -> int:
        if original not in self.class_ids:
            raise ValueError(f"class {original} is not one of the task's classes {self.class_ids}")
        return self.class_ids.index(original)


def make_task(data: RawDataset, classes: Sequence[int] | None) -> Task:
    """Keep the examples of ``classes`` (original ids; ``None`` = all) and relabel them."""
    if classes is None:
        ids = list(range(data.num_classes))
    else:
        ids = sorted(int(c) for c in classes)
        if len(set(ids)) != len(ids):
            raise ValueError(f"classes {tuple(classes)} contain a duplicate")
        bad = [c for c in ids if not 0 <= c < data.num_classes]
        if bad:
            raise ValueError(f"classes {bad} are not labels of dataset {data.name!r} "
                             f"(it has {data.num_classes}: {data.classes})")
    lut = torch.full((data.num_classes,), -1, dtype=torch.long)
    lut[torch.tensor(ids)] = torch.arange(len(ids))

    def part(split: Split) -> tuple[Split, torch.Tensor]:
        new = lut[split.labels]
        keep = torch.nonzero(new >= 0).ravel()
        return Split(select(split.inputs, keep), new[keep].clone()), keep

    train, train_index = part(data.train)
    test, test_index = part(data.test)
    return Task(train, test, ids, [data.classes[c] for c in ids], train_index, test_index)


# -- counting and selection ----------------------------------------------------------------

def count_poisons(epsilon: float | None, n_adv: int | None, n_train: int) -> int:
    """Number of poisons from exactly one of ``epsilon`` / ``n_adv``: ``round(epsilon * n_train)``
    where ``n_train = |D_tr|`` is the size of the trained set, poisons included (module docstring)."""
    if (epsilon is None) == (n_adv is None):
        raise ValueError(f"set exactly one of epsilon (a poisoning rate) and n_adv (a count); "
                         f"got epsilon={epsilon}, n_adv={n_adv}")
    if n_adv is not None:
        n = int(n_adv)
    else:
        n = int(round(float(epsilon) * n_train))
    if n < 1:
        raise ValueError(f"the attack would insert {n} poisons; raise epsilon or n_adv")
    return n


@dataclass(frozen=True)
class PoisonCounts:
    """Sizes of a crafted training set: ``n_train = |D_tr| = n_clean + n_adv + n_aux`` (``n_aux``:
    correctly labelled attacker examples, not in D_adv).  ``epsilon = n_adv / n_train``."""

    n_train: int
    n_adv: int
    n_aux: int = 0

    @property
    def n_clean(self) -> int:
        return self.n_train - self.n_adv - self.n_aux

    @property
    def epsilon(self) -> float:
        return self.n_adv / self.n_train

    def as_dict(self) -> dict[str, Any]:
        return {"n_train": self.n_train, "n_adv": self.n_adv, "n_aux": self.n_aux,
                "n_clean": self.n_clean, "epsilon": self.epsilon}


def task_size(class_sizes: Sequence[int], classes: Sequence[int] | None) -> int:
    """Training examples of the task ``classes`` (original ids; ``None`` = all), given the number
    of training examples of every original class."""
    ids = range(len(class_sizes)) if classes is None else sorted(set(int(c) for c in classes))
    return int(sum(class_sizes[c] for c in ids))


def choose(rng: np.random.Generator, pool: torch.Tensor | np.ndarray, n: int, what: str) -> torch.Tensor:
    """``n`` distinct elements of ``pool`` drawn uniformly, in draw order."""
    pool = np.asarray(pool)
    if n > len(pool):
        raise ValueError(f"need {n} {what} but only {len(pool)} are available")
    return torch.from_numpy(rng.choice(pool, size=n, replace=False).astype(np.int64))


def subsample(split: Split, n: int | None, rng: np.random.Generator, what: str) -> tuple[Split, torch.Tensor]:
    """A uniformly drawn subset of ``n`` examples (in original order); ``None`` keeps all."""
    if n is None or n == len(split):
        return split, torch.arange(len(split))
    idx = choose(rng, np.arange(len(split)), n, what).sort().values
    return split.subset(idx), idx


@dataclass
class Assembled:
    train: Split
    is_adv: torch.Tensor
    kind: torch.Tensor  # CLEAN / POISON / AUX per training example
    origin: torch.Tensor  # index of the source example in the task split (-1: none)


def assemble(parts: Sequence[tuple[RawInputs, torch.Tensor, int, torch.Tensor]],
             rng: np.random.Generator) -> Assembled:
    """Concatenate ``(inputs, labels, kind, origin)`` parts and shuffle them, so positions carry
    no information about which examples are adversarial."""
    inputs: RawInputs | None = None
    labels, kinds, origins = [], [], []
    for x, y, kind, origin in parts:
        if len(y) == 0:
            continue
        inputs = x if inputs is None else concat(inputs, x)
        labels.append(torch.as_tensor(y, dtype=torch.long))
        kinds.append(torch.full((len(y),), kind, dtype=torch.long))
        origins.append(torch.as_tensor(origin, dtype=torch.long))
    y, k, o = torch.cat(labels), torch.cat(kinds), torch.cat(origins)
    perm = torch.from_numpy(rng.permutation(len(y)))
    train = Split(inputs, y).subset(perm)
    return Assembled(train, k[perm] == POISON, k[perm], o[perm])


# -- the dirty-label backdoor recipe -------------------------------------------------------

@dataclass(frozen=True)
class BackdoorConfig:
    """Fields shared by the trigger backdoors.  Defaults: paper 001 Sec. 4.1 unless noted.

    y_targ      true class of poisons and targets (original id); ``None`` = every class except
                ``y_adv`` (all-to-one).  Default airplane (0): paper 001's pair (airplane, bird).
    y_adv       adversarial label (original id).  Default bird (2): paper 001 Sec. 4.1.
    classes     task classes (original ids, relabelled to 0..k-1 in ascending order); ``None`` = all.
    epsilon     poisoning rate |D_adv| / |D_tr| of the trained set (0.05; paper 001 Sec. 4.1 uses
                0.05 and 0.1, ablations 0.01/0.2; paper 001 Sec. 3.3: epsilon N poisons, N = |D_train|).
    n_adv       number of poisons instead of ``epsilon`` (exactly one of the two is set).
    mode        "add" (ours, see module docstring) or "replace" (reference-code, Tran et al.).
    n_train     |D_tr| including poisons; ``None`` = all task training images (ours: small
                scales shrink it).
    n_test      clean test images kept for ``test`` / ``non_targets``; ``None`` = all (ours).
    n_targets   y_targ test images turned into targets; ``None`` = all of them (ours).
    """

    y_targ: int | None = 0
    y_adv: int = 2
    classes: tuple[int, ...] | None = None
    epsilon: float | None = 0.05
    n_adv: int | None = None
    mode: str = "add"
    n_train: int | None = None
    n_test: int | None = None
    n_targets: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.epsilon is not None and not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must lie in (0, 1), got {self.epsilon}")
        if self.y_targ is not None and self.y_targ == self.y_adv:
            raise ValueError(f"y_targ and y_adv must differ (both are {self.y_adv})")
        for name in ("n_adv", "n_train", "n_test", "n_targets"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be a positive count or None, got {v}")


class TriggerBackdoor(Attack):
    """Dirty-label backdoor: ``n_adv`` training inputs of ``y_targ`` get the trigger and label
    ``y_adv``; targets are triggered test inputs of ``y_targ`` (``targets_clean`` their clean
    versions); ``non_targets`` and ``test`` are the clean test set.

    Subclasses implement :meth:`prepare` (draw the fixed trigger from ``rng``) and
    :meth:`apply_trigger`; they may add correctly-labelled attacker examples through
    :meth:`n_auxiliary` / :meth:`auxiliary` (kind ``AUX``, not in ``is_adv``).
    """

    Config = BackdoorConfig
    #: How this attack counts its poisons (read by ``benchmark.tools.poison_rates``).
    epsilon_definition: ClassVar[str] = (
        "|D_adv| / |D_tr| of the trained set: n_adv = round(eps * n_train), |D_tr| = n_train "
        "(poisons and attacker extras included)")

    # -- hooks ---------------------------------------------------------------------------
    def task_classes(self) -> tuple[int, ...] | None:
        """Original class ids of the task (``None`` = all)."""
        return self.config.classes

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        """Draw whatever is fixed for the whole attack (pattern, colour, position, networks);
        ``context`` gives the cache dir and device for anything the attack trains."""

    @abstractmethod
    def apply_trigger(self, inputs: RawInputs, rng: np.random.Generator, split: str,
                      task: Task) -> RawInputs:
        """Return triggered copies of ``inputs`` (``split`` is "train" or "test")."""

    def filter_candidates(self, task: Task, pool: torch.Tensor) -> torch.Tensor:
        """Training indices allowed to become poisons (default: all of ``pool``)."""
        return pool

    def poison_source_labels(self, task: Task) -> list[int]:
        """Task labels whose training examples may become poisons (default: the target classes,
        :meth:`source_labels`; an attack with a fixed released poison set may widen it)."""
        return self.source_labels(task)

    def filter_target_candidates(self, task: Task, pool: torch.Tensor) -> torch.Tensor:
        """Test indices allowed to become targets (default: all of ``pool``; an attack whose
        trigger cannot be applied to some inputs, e.g. deleting a word of a one-word sentence,
        drops them here)."""
        return pool

    def n_auxiliary(self, n_adv: int) -> int:
        return 0

    def auxiliary(self, task: Task, n: int, rng: np.random.Generator) -> Split:
        raise NotImplementedError

    def trigger_info(self) -> dict[str, Any]:
        return {}

    # -- recipe --------------------------------------------------------------------------
    def counts(self, n_all: int) -> PoisonCounts:
        """Poison counts for a task with ``n_all`` training examples, from the config alone."""
        c = self.config
        n_train = c.n_train if c.n_train is not None else n_all
        n_adv = count_poisons(c.epsilon, c.n_adv, n_train)
        n_aux = self.n_auxiliary(n_adv)
        if n_train - n_adv - n_aux < 0:
            raise ValueError(f"n_train={n_train} is smaller than the {n_adv} poisons + {n_aux} "
                             f"auxiliary examples; raise n_train or lower epsilon")
        return PoisonCounts(n_train, n_adv, n_aux)

    def poison_counts(self, class_sizes: Sequence[int]) -> PoisonCounts:
        """What :meth:`craft` would produce on a training split with ``class_sizes[k]`` examples of
        original class ``k``, without data or trigger (used by ``benchmark.tools.poison_rates``)."""
        return self.counts(task_size(class_sizes, self.task_classes()))

    def source_labels(self, task: Task) -> list[int]:
        c = self.config
        ya = task.label(c.y_adv)
        if c.y_targ is None:
            return [k for k in range(len(task.class_ids)) if k != ya]
        return [task.label(c.y_targ)]

    def craft(self, data: RawDataset, rng: np.random.Generator, context: RunContext) -> AttackedData:
        self.check_dataset(data)
        c = self.config
        task = make_task(data, self.task_classes())
        ya = task.label(c.y_adv)
        src_labels = self.source_labels(task)
        self.prepare(task, rng, context)

        n_all = len(task.train)
        counts = self.counts(n_all)
        n_train, n_adv, n_aux, n_clean = counts.n_train, counts.n_adv, counts.n_aux, counts.n_clean
        is_src = torch.isin(task.train.labels, torch.tensor(self.poison_source_labels(task)))
        pool = self.filter_candidates(task, torch.nonzero(is_src).ravel())
        if n_adv > len(pool):
            raise ValueError(
                f"{type(self).__name__}: {n_adv} poisons requested but only {len(pool)} training "
                f"images of the source class(es) qualify; lower epsilon/n_adv or set y_targ=None "
                f"(all-to-one)")
        src = choose(rng, pool.numpy(), n_adv, "poison sources")
        if c.mode == "replace":
            candidates = np.setdiff1d(np.arange(n_all), src.numpy())
        else:
            candidates = np.arange(n_all)
        clean_idx = choose(rng, candidates, n_clean, "clean training images").sort().values

        poison_x = self.apply_trigger(select(task.train.inputs, src), rng, "train", task)
        parts = [
            (select(task.train.inputs, clean_idx), task.train.labels[clean_idx], CLEAN, clean_idx),
            (poison_x, torch.full((n_adv,), ya), POISON, src),
        ]
        if n_aux:
            aux = self.auxiliary(task, n_aux, rng)
            parts.append((aux.inputs, aux.labels, AUX, torch.full((n_aux,), -1)))
        asm = assemble(parts, rng)

        test, test_keep = subsample(task.test, c.n_test, rng, "clean test images")
        t_pool = self.filter_target_candidates(
            task, torch.nonzero(torch.isin(task.test.labels, torch.tensor(src_labels))).ravel())
        if len(t_pool) == 0:
            raise ValueError("the test split has no image of the source class(es); no targets")
        if c.n_targets is None:
            t_idx = t_pool
        else:
            t_idx = choose(rng, t_pool.numpy(), c.n_targets, "source-class test images").sort().values
        targets_clean = task.test.subset(t_idx)
        targets = Split(self.apply_trigger(targets_clean.inputs, rng, "test", task),
                        targets_clean.labels.clone())

        is_poison = asm.kind == POISON
        info: dict[str, Any] = {
            "y_targ": c.y_targ, "y_adv": c.y_adv,
            "y_targ_task": src_labels[0] if c.y_targ is not None else None, "y_adv_task": ya,
            "n_train": len(asm.train), "n_adv": n_adv, "n_aux": n_aux, "n_clean": n_clean,
            "epsilon_effective": n_adv / len(asm.train), "mode": c.mode,
            "n_targets": len(targets), "n_test": len(test),
            "trigger": self.trigger_info(),
            # index tensors (int64): raw ids into data.train / data.test
            "kind": asm.kind,
            "train_raw_index": torch.where(asm.kind == AUX, torch.full_like(asm.origin, -1),
                                           task.train_index[asm.origin.clamp(min=0)]),
            "poison_raw_index": task.train_index[asm.origin[is_poison]],
            "target_test_raw_index": task.test_index[t_idx],
            "test_raw_index": task.test_index[test_keep],
        }
        return AttackedData(
            train=asm.train, is_adv=asm.is_adv, test=test, targets=targets,
            y_adv=torch.full((len(targets),), ya), non_targets=test,
            num_classes=len(task.class_ids), classes=task.classes,
            targets_clean=targets_clean, modality=data.modality, sample_rate=data.sample_rate,
            info=info,
        )


def config_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}
