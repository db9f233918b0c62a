"""Nguyen & Tran's input-aware dynamic backdoor (paper 001 Sec. 4.1 "input-aware"), as a data
poisoning attack.

The original is a training-control attack.  Its data-poisoning adaptation (as BackdoorBench
does it) has two phases, both on the attacker's side:

1. train a mask network M (mask pre-training), then a pattern generator G jointly with a
   surrogate classifier (M frozen), following the original losses (re-derived, not copied):
   mask stage ``lambda_norm * mean(relu(M(x) - mask_density)) + lambda_div * L_div(M)``; joint
   stage ``CE(classifier, batch with p_attack backdoored + p_cross cross-trigger + clean inputs)
   + lambda_div * L_div(G)`` with ``L_div(f) = mean(d(x1, x2) / (d(f(x1), f(x2)) + 1e-7))`` and
   ``d`` the per-example RMS difference;
2. freeze G and M and write a static poisoned set: ``x_bd = x + (G(x) - x) * M(x)`` labelled
   ``y_adv``, plus cross-trigger examples ``x + (G(x') - x) * M(x')`` with their true labels
   (kind ``AUX``, not in ``is_adv``).

The trained networks depend only on the config and the training images (their seed is
``gen_seed``, not the trial's ``rng``), so they are cached by a hash of both in
``<context.cache_dir>/input_aware/`` -- the run's ``--cache-dir``, handed in through the
:class:`~benchmark.api.RunContext`; ``context.cache_dir=None`` (or ``use_cache=False``) trains
without caching -- and loaded with ``torch.load(weights_only=True)``; never commit them.  They are
trained on ``context.device``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from attacks.patterns import BackdoorConfig, Task, TriggerBackdoor, config_dict
from benchmark.api import RunContext
from benchmark.data.cache import load_or_build
from benchmark.data.types import Split
from benchmark.registry import attacks
from benchmark.rng import derive_seed

CACHE_NAMESPACE = "input_aware"
CACHE_VERSION = 1  # bump when training code changes (ours)
_EPS = 1e-7  # reference-code EPSILON
#: fields that change the trained networks (everything else only changes how they are used)
TRAINING_FIELDS = (
    "y_adv", "classes", "gen_channels", "classifier_width", "mask_density", "lambda_norm",
    "lambda_div", "p_attack", "p_cross", "mask_steps", "gen_steps", "batch_size", "lr_mask",
    "lr_gen", "lr_classifier", "gen_n_images", "gen_seed", "schedule",
)


@dataclass(frozen=True)
class InputAwareConfig(BackdoorConfig):
    """Pair (airplane, bird), epsilon 0.05, mode "add": see BackdoorConfig (paper 001 Sec. 4.1).

    gen_channels     channels per down-step of G and M: (16, 32, 64) (ours; reference-code uses
                     (32, 64, 128), halved for CPU).
    classifier_width first-layer width of the surrogate classifier: 32 (ours; reference-code
                     trains a PreActResNet18 -- too slow on a CPU).
    mask_density     0.032 (reference-code).        lambda_norm  100 (reference-code).
    lambda_div       1.0 (reference-code).          p_attack, p_cross  0.1, 0.1 (reference-code).
    mask_steps       mask pre-training steps: 1000 (ours; reference-code 25 epochs).
    gen_steps        joint G + classifier steps: 3000 (ours; reference-code 600 epochs).
    batch_size       128 (reference-code).
    lr_mask, lr_gen  Adam 0.01, betas (0.5, 0.9) (reference-code).
    lr_classifier    SGD 0.01, momentum 0.9, weight decay 5e-4 (reference-code).
    schedule         x0.1 learning-rate steps at the reference's fractions of training (mask
                     10/25, 20/25; classifier 100..400/600; G 200..500/600) (reference-code).
    gen_n_images     training images G and M are trained on; ``None`` = all (ours).
    gen_seed         seed of network initialisation and batch order: 0 (ours).
    cross_ratio      cross-trigger examples per poison: 1.0 (reference-code p_cross / p_attack);
                     they are correctly labelled and count inside |D_tr| (attacks.patterns).
    use_cache        reuse networks cached under ``context.cache_dir`` (ours).

    G and M are trained on the run's device (``context.device``; there is no config key: the
    device is a property of the run, like the victim's training device).  On a loaded 2-core
    CPU one step at the defaults takes ~2-3 s.
    """

    gen_channels: tuple[int, ...] = (16, 32, 64)
    classifier_width: int = 32
    mask_density: float = 0.032
    lambda_norm: float = 100.0
    lambda_div: float = 1.0
    p_attack: float = 0.1
    p_cross: float = 0.1
    mask_steps: int = 1000
    gen_steps: int = 3000
    batch_size: int = 128
    lr_mask: float = 0.01
    lr_gen: float = 0.01
    lr_classifier: float = 0.01
    schedule: bool = True
    gen_n_images: int | None = None
    gen_seed: int = 0
    cross_ratio: float = 1.0
    use_cache: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gen_channels or any(ch < 1 for ch in self.gen_channels):
            raise ValueError("gen_channels must be a non-empty tuple of positive widths")
        if self.mask_steps < 0 or self.gen_steps < 0 or self.batch_size < 2:
            raise ValueError("mask_steps, gen_steps must be >= 0 and batch_size >= 2")
        if not (0 <= self.p_attack and 0 <= self.p_cross and self.p_attack + self.p_cross <= 1):
            raise ValueError("p_attack, p_cross must be >= 0 with p_attack + p_cross <= 1")
        if self.cross_ratio < 0:
            raise ValueError("cross_ratio must be >= 0")


# -- networks -----------------------------------------------------------------------------

def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetLite(nn.Module):
    """Encoder-decoder as in the reference generator: per down-step two conv-BN-ReLU blocks and
    a 2x2 max-pool, a middle block, per up-step a bilinear x2 upsampling and two blocks, then a
    1x1 conv; output ``tanh(.) / (2 + 1e-7) + 0.5`` in (0, 1)."""

    def __init__(self, in_ch: int, out_ch: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        down, prev = [], in_ch
        for ch in channels:
            down.append(nn.Sequential(_block(prev, ch), _block(ch, ch)))
            prev = ch
        self.down = nn.ModuleList(down)
        self.middle = _block(prev, prev)
        up = []
        for ch in reversed(channels):
            up.append(nn.Sequential(_block(prev, ch), _block(ch, ch)))
            prev = ch
        self.up = nn.ModuleList(up)
        self.out = nn.Conv2d(prev, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.down:
            x = F.max_pool2d(step(x), 2)
        x = self.middle(x)
        for step in self.up:
            x = step(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return torch.tanh(self.out(x)) / (2 + _EPS) + 0.5


def mask_threshold(m: torch.Tensor) -> torch.Tensor:
    """Reference-code mask sharpening ``tanh(20 m - 10) / (2 + 1e-7) + 0.5``."""
    return torch.tanh(m * 20 - 10) / (2 + _EPS) + 0.5


class SurrogateCNN(nn.Module):
    def __init__(self, in_ch: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _block(in_ch, width), nn.MaxPool2d(2), _block(width, 2 * width), nn.MaxPool2d(2),
            _block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def backdoor(x: torch.Tensor, pattern: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x + (pattern - x) * mask`` (mask broadcast over channels)."""
    return x + (pattern - x) * mask


def _rms_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(1).sqrt()


def diversity_loss(x1: torch.Tensor, x2: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    return (_rms_dist(x1, x2) / (_rms_dist(f1, f2) + _EPS)).mean()


def _milestones(fractions: tuple[float, ...], steps: int) -> list[int]:
    return sorted({max(1, int(round(f * steps))) for f in fractions})


# -- training -----------------------------------------------------------------------------

def train_networks(x: torch.Tensor, y: torch.Tensor, num_classes: int, y_adv: int,
                   cfg: InputAwareConfig, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train M, then G (+ a surrogate classifier) on ``device``; returns their state dicts (on
    the CPU) and loss traces."""
    dev = torch.device(device)
    ch = x.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("input-aware", cfg.gen_seed))
        gen = UNetLite(ch, ch, cfg.gen_channels).to(dev)
        mask = UNetLite(ch, 1, cfg.gen_channels).to(dev)
        clf = SurrogateCNN(ch, num_classes, cfg.classifier_width).to(dev)
    g = torch.Generator().manual_seed(derive_seed("input-aware-batches", cfg.gen_seed))
    n = len(x)
    bs = min(cfg.batch_size, n)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randperm(n, generator=g)[:bs]
        return x[idx].to(dev), y[idx].to(dev)

    # (1) mask pre-training
    opt_m = torch.optim.Adam(mask.parameters(), lr=cfg.lr_mask, betas=(0.5, 0.9))
    sch_m = torch.optim.lr_scheduler.MultiStepLR(opt_m, _milestones((10 / 25, 20 / 25), cfg.mask_steps), 0.1)
    mask.train()
    mask_losses = []
    for _ in range(cfg.mask_steps):
        x1, _y1 = batch()
        x2, _y2 = batch()
        m1, m2 = mask_threshold(mask(x1)), mask_threshold(mask(x2))
        loss = cfg.lambda_norm * F.relu(m1 - cfg.mask_density).mean() + \
            cfg.lambda_div * diversity_loss(x1, x2, m1, m2)
        opt_m.zero_grad()
        loss.backward()
        opt_m.step()
        if cfg.schedule:
            sch_m.step()
        mask_losses.append(float(loss.detach()))
    mask.eval()
    for p in mask.parameters():
        p.requires_grad_(False)

    # (2) joint generator + surrogate classifier
    opt_c = torch.optim.SGD(clf.parameters(), lr=cfg.lr_classifier, momentum=0.9, weight_decay=5e-4)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_gen, betas=(0.5, 0.9))
    s = cfg.gen_steps
    sch_c = torch.optim.lr_scheduler.MultiStepLR(opt_c, _milestones((1 / 6, 2 / 6, 3 / 6, 4 / 6), s), 0.1)
    sch_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, _milestones((2 / 6, 3 / 6, 4 / 6, 5 / 6), s), 0.1)
    gen.train()
    clf.train()
    gen_losses, bd_acc = [], []
    n_bd, n_cross = int(bs * cfg.p_attack), int(bs * cfg.p_cross)
    for _ in range(cfg.gen_steps):
        x1, y1 = batch()
        x2, _ = batch()
        p1, p2 = gen(x1), gen(x2)
        with torch.no_grad():
            m1, m2 = mask_threshold(mask(x1)), mask_threshold(mask(x2))
        xb = backdoor(x1[:n_bd], p1[:n_bd], m1[:n_bd])
        xc = backdoor(x1[n_bd:n_bd + n_cross], p2[n_bd:n_bd + n_cross], m2[n_bd:n_bd + n_cross])
        inputs = torch.cat([xb, xc, x1[n_bd + n_cross:]])
        labels = torch.cat([torch.full((n_bd,), y_adv, device=dev), y1[n_bd:]])
        logits = clf(inputs)
        loss = F.cross_entropy(logits, labels) + cfg.lambda_div * diversity_loss(x1, x2, p1, p2)
        opt_c.zero_grad()
        opt_g.zero_grad()
        loss.backward()
        opt_c.step()
        opt_g.step()
        if cfg.schedule:
            sch_c.step()
            sch_g.step()
        gen_losses.append(float(loss.detach()))
        if n_bd:
            bd_acc.append(float((logits[:n_bd].argmax(1) == y_adv).float().mean()))
    return {
        "generator": {k: v.detach().cpu() for k, v in gen.state_dict().items()},
        "mask": {k: v.detach().cpu() for k, v in mask.state_dict().items()},
        "mask_losses": torch.tensor(mask_losses, dtype=torch.float64),
        "gen_losses": torch.tensor(gen_losses, dtype=torch.float64),
        "surrogate_bd_acc": torch.tensor(bd_acc, dtype=torch.float64),
    }


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        a = t.detach().cpu().contiguous().numpy()
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@attacks.register("input-aware",
                  "Nguyen & Tran input-aware dynamic backdoor: trained generator + mask, static poisons (paper 001 Sec. 4.1)")
class InputAware(TriggerBackdoor):
    Config = InputAwareConfig
    modalities = ("image",)

    def training_images(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        n = len(task.train)
        if c.gen_n_images is None or c.gen_n_images >= n:
            idx = torch.arange(n)
        else:
            rng = np.random.default_rng(derive_seed("input-aware-images", c.gen_seed))
            idx = torch.from_numpy(np.sort(rng.choice(n, size=c.gen_n_images, replace=False)))
        return task.train.inputs[idx], task.train.labels[idx]

    def cache_key(self, task: Task, x: torch.Tensor, y: torch.Tensor,
                  device: str | torch.device = "cpu") -> dict[str, Any]:
        """What the networks are computed from: the training fields of the config, the images,
        and the device type (CPU and CUDA kernels give slightly different networks)."""
        cfg = config_dict(self.config)
        return {"attack": "input-aware", "version": CACHE_VERSION,
                "config": {k: cfg[k] for k in TRAINING_FIELDS},
                "num_classes": len(task.class_ids), "data": tensor_fingerprint(x, y),
                "device_type": torch.device(device).type}

    def prepare(self, task: Task, rng: np.random.Generator, context: RunContext) -> None:
        c = self.config
        xs = task.train.inputs
        if not isinstance(xs, torch.Tensor) or xs.dim() != 4:
            raise ValueError("input-aware needs image inputs N x C x H x W")
        ch, h, w = xs.shape[1:]
        k = 2 ** len(c.gen_channels)
        if h % k or w % k:
            raise ValueError(f"{h}x{w} images are not divisible by 2^{len(c.gen_channels)}; "
                             f"use fewer gen_channels entries")
        x, y = self.training_images(task)
        ya = task.label(c.y_adv)
        cache_dir = Path(context.cache_dir) if c.use_cache and context.cache_dir is not None else None
        res = load_or_build(cache_dir, CACHE_NAMESPACE, self.cache_key(task, x, y, context.device),
                            lambda: train_networks(x, y, len(task.class_ids), ya, c, context.device))
        self.cache_status, self.cache_path = res.status, res.path
        self.generator = UNetLite(ch, ch, c.gen_channels)
        self.mask = UNetLite(ch, 1, c.gen_channels)
        self.generator.load_state_dict(res.payload["generator"])
        self.mask.load_state_dict(res.payload["mask"])
        self.generator.eval()
        self.mask.eval()
        self.training_log = res.payload

    @torch.no_grad()
    def patterns_and_masks(self, x: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        ps, ms = [], []
        for i in range(0, len(x), chunk):
            xi = x[i:i + chunk]
            ps.append(self.generator(xi))
            ms.append(mask_threshold(self.mask(xi)))
        return torch.cat(ps), torch.cat(ms)

    def apply_trigger(self, inputs, rng, split, task):
        p, m = self.patterns_and_masks(inputs)
        return backdoor(inputs, p, m)

    def n_auxiliary(self, n_adv: int) -> int:
        return int(round(self.config.cross_ratio * n_adv))

    def auxiliary(self, task: Task, n: int, rng: np.random.Generator) -> Split:
        """Cross-trigger examples: x with the pattern and mask of another random image x'."""
        n_all = len(task.train)
        i = torch.from_numpy(rng.integers(0, n_all, size=n))
        j = torch.from_numpy((i.numpy() + rng.integers(1, n_all, size=n)) % n_all)  # j != i
        x = task.train.inputs[i]
        p, m = self.patterns_and_masks(task.train.inputs[j])
        return Split(backdoor(x, p, m), task.train.labels[i].clone())

    def trigger_info(self) -> dict[str, Any]:
        log = self.training_log
        acc = log["surrogate_bd_acc"]
        return {"cache": self.cache_status, "cache_path": str(self.cache_path) if self.cache_path else None,
                "final_mask_loss": float(log["mask_losses"][-1]) if len(log["mask_losses"]) else None,
                "final_gen_loss": float(log["gen_losses"][-1]) if len(log["gen_losses"]) else None,
                "surrogate_bd_acc_last100": float(acc[-100:].mean()) if len(acc) else None}
