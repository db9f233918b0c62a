"""Training that records its trajectory (paper 000, suppl. Alg. 4).

A run of ``T`` iterations is split into ``epochs * checkpoints_per_epoch`` evenly spaced
*intervals*.  Checkpoint ``k`` stores, for interval ``k`` starting at iteration ``t_k``:

* ``params``: theta_{t_k}, the parameters *before* the interval's first update (Eq. 4/5 use
  theta_{t-1} with eta_t),
* ``lr``: eta, the learning rate of the interval's first update,
* ``batch_size``: b,
* ``example_ids``: the training examples in the interval's batches (with multiplicity), which
  TracIn (Eq. 4) credits at this checkpoint.

The run also keeps theta_0 (random or the given pretrained parameters) and theta_T.
Weight decay is applied as the reference code applies it: coupled L2 in the optimizer, only on
parameters with at least two dimensions (no decay on biases and normalisation parameters).
"""
from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from benchmark.training.losses import per_example_loss

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"  # "adam" | "sgd"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 1e-3
    decay_1d_params: bool = False  # reference code: no decay on biases / BN parameters
    schedule: str = "onecycle"  # "onecycle" | "constant" | "cosine"
    onecycle_pct_start: float = 0.3
    # OneCycleLR's momentum cycling (0.95 -> 0.85 -> 0.95 of Adam's beta1 / SGD's momentum).
    # The reference code cycles it for Adam too (cycle_momentum=not Adagrad); ours: None = cycle
    # SGD's momentum only and keep Adam's beta1 at 0.9 (the setting every frozen attack
    # calibration used; a README deviation); True / False force it for either optimizer.
    cycle_momentum: bool | None = None
    checkpoints_per_epoch: int = 5
    drop_last: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "constant", "cosine"):
            raise ValueError(f"schedule must be onecycle|constant|cosine, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoints_per_epoch < 1:
            raise ValueError("epochs, batch_size and checkpoints_per_epoch must be >= 1")


@dataclass
class Checkpoint:
    iteration: int  # t_k: number of updates applied before these parameters
    params: StateDict
    lr: float
    batch_size: int
    example_ids: torch.Tensor  # int64, ids of the examples in this interval's batches


@dataclass
class TrainingRun:
    config: TrainConfig
    n_train: int
    theta0: StateDict
    checkpoints: list[Checkpoint]
    final: StateDict
    total_iterations: int
    epoch_losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0

    # -- persistence (loaded back with weights_only=True) -----------------------------------
    def to_payload(self) -> dict:
        return {
            "format": 1,
            "config": self.config.__dict__.copy(),
            "n_train": self.n_train,
            "theta0": self.theta0,
            "checkpoints": [
                {
                    "iteration": c.iteration,
                    "params": c.params,
                    "lr": c.lr,
                    "batch_size": c.batch_size,
                    "example_ids": c.example_ids,
                }
                for c in self.checkpoints
            ],
            "final": self.final,
            "total_iterations": self.total_iterations,
            "epoch_losses": list(self.epoch_losses),
            "wall_time_s": self.wall_time_s,
        }

    @classmethod
    def from_payload(cls, payload: dict) -> "TrainingRun":
        if payload.get("format") != 1:
            raise ValueError(f"unsupported training-run format {payload.get('format')!r}")
        return cls(
            config=TrainConfig(**payload["config"]),
            n_train=payload["n_train"],
            theta0=payload["theta0"],
            checkpoints=[Checkpoint(**c) for c in payload["checkpoints"]],
            final=payload["final"],
            total_iterations=payload["total_iterations"],
            epoch_losses=list(payload["epoch_losses"]),
            wall_time_s=float(payload.get("wall_time_s", 0.0)),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(self.to_payload(), buf)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "TrainingRun":
        return cls.from_payload(torch.load(path, map_location="cpu", weights_only=True))


def _clone_state(model: nn.Module) -> StateDict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if (p.ndim >= 2 or cfg.decay_1d_params) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.lr,
            epochs=cfg.epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=cfg.onecycle_pct_start,
            cycle_momentum=cfg.optimizer == "sgd" if cfg.cycle_momentum is None else cfg.cycle_momentum,
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def checkpoint_iterations(steps_per_epoch: int, epochs: int, per_epoch: int) -> list[int]:
    """Evenly spaced interval starts: ``per_epoch`` per epoch, the first at the epoch start."""
    if per_epoch > steps_per_epoch:
        raise ValueError(
            f"checkpoints_per_epoch={per_epoch} exceeds the {steps_per_epoch} iterations per epoch"
        )
    starts = []
    for e in range(epochs):
        for k in range(per_epoch):
            starts.append(e * steps_per_epoch + (k * steps_per_epoch) // per_epoch)
    return starts


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    theta0: StateDict | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = per_example_loss,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingRun:
    """Train ``model`` on ``(inputs, labels)`` and record the trajectory.

    ``model`` arrives freshly initialised; if ``theta0`` is given (fine-tuning from pretrained
    parameters) it is loaded first.  All randomness (batch order) comes from ``generator``; on
    CPU the same generator state gives bit-identical parameters.
    """
    t_start = time.perf_counter()
    n = len(labels)
    if n < cfg.batch_size and cfg.drop_last:
        raise ValueError(f"training set of {n} examples is smaller than batch size {cfg.batch_size}")
    if theta0 is not None:
        model.load_state_dict(theta0)
    start_state = _clone_state(model)
    steps_per_epoch = n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)
    opt = _make_optimizer(model, cfg)
    sched = _make_schedule(opt, cfg, steps_per_epoch)
    starts = checkpoint_iterations(steps_per_epoch, cfg.epochs, cfg.checkpoints_per_epoch)
    start_set = set(starts)
    checkpoints: list[Checkpoint] = []
    interval_ids: list[torch.Tensor] = []
    epoch_losses: list[float] = []
    t = 0
    total = cfg.epochs * steps_per_epoch

    def close_interval() -> None:
        if checkpoints:
            checkpoints[-1].example_ids = (
                torch.cat(interval_ids) if interval_ids else torch.empty(0, dtype=torch.long)
            )
        interval_ids.clear()

    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=generator)
        model.train()
        running, seen = 0.0, 0
        for step in range(steps_per_epoch):
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if t in start_set:
                close_interval()
                checkpoints.append(
                    Checkpoint(
                        iteration=t,
                        params=_clone_state(model),
                        lr=float(opt.param_groups[0]["lr"]),
                        batch_size=cfg.batch_size,
                        example_ids=torch.empty(0, dtype=torch.long),
                    )
                )
            interval_ids.append(batch)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs[batch]), labels[batch]).mean()
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(batch)
            seen += len(batch)
            t += 1
            if progress is not None:
                progress(t, total)
        epoch_losses.append(running / max(seen, 1))
    close_interval()
    model.eval()
    return TrainingRun(
        config=cfg,
        n_train=n,
        theta0=start_state,
        checkpoints=checkpoints,
        final=_clone_state(model),
        total_iterations=t,
        epoch_losses=epoch_losses,
        wall_time_s=time.perf_counter() - t_start,
    )


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    outs = [model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)
