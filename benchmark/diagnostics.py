"""Training-dynamics diagnostics of paper 000 (issue 5).

* :func:`loss_tracking` -- Fig. 2 (paper 000 Sec. 4.2): at every checkpoint, the median and
  interquartile range of the per-example training loss of ``D_adv`` and ``D_cl`` separately, and
  the *gradient norm ratio* of Eq. 6

      GNR_t = med{ ||grad_theta L(z; theta_t)|| : z in D_adv } / med{ ||grad_theta L(z; theta_t)|| : z in D_cl }.

  Eq. 6 as printed writes ``||L(z; theta_t)||``; the text ("compares the median gradient
  magnitude") and the Fig. 2 caption ("training gradient magnitude") say it is the norm of the
  loss *gradient*, which is what is computed here.
* :func:`layer_gradient_split` -- Fig. 3 (paper 000 Sec. 4.4): at every checkpoint, the attack
  target's gradient ``g_targ = grad_theta L(z_targ; theta_t)`` (label = ``y_adv``, the final
  model's prediction) split into the first convolution (Conv1), the final linear layer
  (``model.classifier``) and all other parameters.

Conventions (paper 000 Sec. 2, as for the influence estimators): per-example loss
:func:`benchmark.training.losses.per_example_loss` without a weight-decay term, model in eval
mode (BatchNorm uses its running statistics, so every example's gradient is its own).  The points
are the checkpoints' parameters (theta at the *start* of each interval, with the iteration index
and learning rate of that interval) followed by the final parameters theta_T (iteration ``T``,
learning rate NaN: no update starts there).  Medians and percentiles are numpy's (linear
interpolation; the median of an even count is the mean of the two middle values).

Per-example gradient norms are computed batched with ``torch.func.vmap(grad(...))`` over chunks
of examples; only the per-tensor squared norms leave the vmapped function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from benchmark.training.losses import per_example_loss, predict
from benchmark.training.trainer import TrainingRun

StateDict = dict[str, torch.Tensor]
PART_NAMES = ("first", "last", "rest")  # ours


# =====================================================================================
# Shared plumbing
# =====================================================================================
def _points(run: TrainingRun) -> list[tuple[int, float, StateDict]]:
    """(iteration, lr, params) of every checkpoint, then (T, nan, theta_T)."""
    if not run.checkpoints:
        raise ValueError("the training run has no checkpoints; train with checkpoints_per_epoch >= 1")
    pts = [(int(c.iteration), float(c.lr), c.params) for c in run.checkpoints]
    pts.append((int(run.total_iterations), math.nan, run.final))
    return pts


def _steps_per_epoch(run: TrainingRun) -> float:
    return run.total_iterations / max(run.config.epochs, 1)


def _load(model_factory: Callable[[], nn.Module], params: StateDict, device: torch.device,
          dtype: torch.dtype) -> nn.Module:
    model = model_factory()
    model.load_state_dict(params)
    return model.to(device=device, dtype=dtype).eval()


def _as_input(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(device)
    return x.to(dtype) if x.is_floating_point() else x


def per_example_losses_and_sq_norms(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, chunk_size: int = 64,
    gradients: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """Per-example losses ``(n,)`` and per-parameter-tensor squared gradient norms ``(n, P)``.

    ``model`` must already be on the inputs' device and dtype and in eval mode.  Gradients are
    taken with ``vmap(grad_and_value(...))`` over chunks of ``chunk_size`` examples (paper 000
    Sec. 2: loss without weight decay).  Returns ``(losses, sq_norms or None, tensor names)``.
    """
    if model.training:
        raise ValueError("per-example gradients need the model in eval mode (call model.eval())")
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    names = list(params)
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    device = next(iter(params.values())).device if params else torch.device("cpu")

    def loss_one(p: StateDict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return per_example_loss(out, y.unsqueeze(0)).sum()

    def one(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, loss = grad_and_value(loss_one)(params, x, y)
        return loss, torch.stack([g[k].pow(2).sum() for k in names])

    batched = vmap(one)
    losses, sq = [], []
    for i in range(0, len(labels), chunk_size):
        x = inputs[i : i + chunk_size].to(device)
        y = labels[i : i + chunk_size].to(device)
        if gradients:
            loss, s = batched(x, y)
            sq.append(s.detach().to("cpu", torch.float64))
        else:
            with torch.no_grad():
                loss = per_example_loss(model(x), y)
        losses.append(loss.detach().to("cpu", torch.float64))
    cat = lambda xs, width: torch.cat(xs) if xs else torch.empty((0,) + width, dtype=torch.float64)  # noqa: E731
    return cat(losses, ()), (cat(sq, (len(names),)) if gradients else None), names


def _check_data(inputs: torch.Tensor, labels: torch.Tensor) -> None:
    if len(inputs) != len(labels):
        raise ValueError(f"inputs ({len(inputs)}) and labels ({len(labels)}) differ in length")


# =====================================================================================
# Fig. 2: loss tracking and gradient norm ratio (paper 000 Sec. 4.2, Eq. 6)
# =====================================================================================
@dataclass
class LossTracking:
    """Per-point statistics of ``D_adv`` and ``D_cl`` (points = checkpoints, then theta_T).

    Arrays have one entry per point.  ``losses`` and ``grad_norms`` keep the raw per-example
    values ``(points, n)`` (``grad_norms`` is None when gradients were not computed).
    """

    iterations: np.ndarray  # int, t of each point; the last is T (theta_T)
    lrs: np.ndarray  # eta of the interval starting at the point; NaN for theta_T
    steps_per_epoch: float
    n_adv: int
    n_cl: int
    adv_loss_median: np.ndarray
    adv_loss_q25: np.ndarray
    adv_loss_q75: np.ndarray
    cl_loss_median: np.ndarray
    cl_loss_q25: np.ndarray
    cl_loss_q75: np.ndarray
    adv_grad_norm_median: np.ndarray  # NaN when gradients were not computed
    cl_grad_norm_median: np.ndarray
    gnr: np.ndarray  # Eq. 6
    is_adv: np.ndarray = field(repr=False)
    losses: np.ndarray = field(repr=False)
    grad_norms: np.ndarray | None = field(default=None, repr=False)

    @property
    def epochs(self) -> np.ndarray:
        """Point positions in epochs (iteration / steps per epoch)."""
        return self.iterations / self.steps_per_epoch

    def to_dict(self) -> dict:
        """JSON-friendly summary (no per-example arrays)."""
        keys = ("iterations", "lrs", "adv_loss_median", "adv_loss_q25", "adv_loss_q75",
                "cl_loss_median", "cl_loss_q25", "cl_loss_q75", "adv_grad_norm_median",
                "cl_grad_norm_median", "gnr")
        out: dict = {k: [None if isinstance(v, float) and math.isnan(v) else v
                         for v in getattr(self, k).tolist()] for k in keys}
        out.update(steps_per_epoch=self.steps_per_epoch, n_adv=self.n_adv, n_cl=self.n_cl)
        return out


def loss_tracking(
    model_factory: Callable[[], nn.Module],
    run: TrainingRun,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    is_adv: torch.Tensor | np.ndarray,
    *,
    gradients: bool = True,
    chunk_size: int = 64,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> LossTracking:
    """Fig. 2 / Eq. 6 of paper 000 (Sec. 4.2): loss median + IQR of D_adv and D_cl and the
    gradient norm ratio GNR_t at every checkpoint and at theta_T.

    ``inputs``/``labels`` are the (featurized) training set the run was trained on -- or any
    subset of it, e.g. a random sample of D_cl to save time -- and ``is_adv`` marks D_adv.
    ``gradients=False`` skips the gradient norms (GNR is then NaN).
    """
    _check_data(inputs, labels)
    adv = np.asarray(is_adv.cpu() if isinstance(is_adv, torch.Tensor) else is_adv).astype(bool)
    if adv.shape != (len(labels),):
        raise ValueError(f"is_adv must be a boolean vector of length {len(labels)}, got shape {adv.shape}")
    if not adv.any() or adv.all():
        raise ValueError(f"loss tracking needs both D_adv and D_cl to be non-empty; is_adv has "
                         f"{int(adv.sum())} of {len(adv)} examples marked adversarial")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = _as_input(inputs, dev, dtype)
    y = labels.to(dev)

    pts = _points(run)
    all_losses, all_norms = [], []
    for _, _, params in pts:
        model = _load(model_factory, params, dev, dtype)
        loss, sq, _ = per_example_losses_and_sq_norms(model, x, y, chunk_size, gradients)
        all_losses.append(loss.numpy())
        if sq is not None:
            all_norms.append(sq.sum(dim=1).sqrt().numpy())
    losses = np.stack(all_losses)
    norms = np.stack(all_norms) if gradients else None

    def q(a: np.ndarray, p: float) -> np.ndarray:
        return np.percentile(a, p, axis=1)

    la, lc = losses[:, adv], losses[:, ~adv]
    if norms is not None:
        ga, gc = np.median(norms[:, adv], axis=1), np.median(norms[:, ~adv], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gnr = ga / gc
    else:
        ga = gc = gnr = np.full(len(pts), np.nan)
    return LossTracking(
        iterations=np.array([p[0] for p in pts], dtype=np.int64),
        lrs=np.array([p[1] for p in pts], dtype=np.float64),
        steps_per_epoch=_steps_per_epoch(run),
        n_adv=int(adv.sum()), n_cl=int((~adv).sum()),
        adv_loss_median=np.median(la, axis=1), adv_loss_q25=q(la, 25), adv_loss_q75=q(la, 75),
        cl_loss_median=np.median(lc, axis=1), cl_loss_q25=q(lc, 25), cl_loss_q75=q(lc, 75),
        adv_grad_norm_median=ga, cl_grad_norm_median=gc, gnr=gnr,
        is_adv=adv, losses=losses, grad_norms=norms,
    )


def summarize_loss_tracking(result: LossTracking) -> str:
    """A few lines with the Fig. 2 numbers (start, minimum of D_adv's median loss, end)."""
    r = result
    k_min = int(np.argmin(r.adv_loss_median))
    lines = [f"loss tracking (paper 000 Fig. 2): |D_adv|={r.n_adv} |D_cl|={r.n_cl}, "
             f"{len(r.iterations) - 1} checkpoints + theta_T (T={int(r.iterations[-1])})"]
    for label, k in (("start", 0), ("min adv", k_min), ("final", len(r.iterations) - 1)):
        lines.append(
            f"  {label:8s} t={int(r.iterations[k]):6d}  loss med [IQR]  adv {r.adv_loss_median[k]:.3g} "
            f"[{r.adv_loss_q25[k]:.3g}, {r.adv_loss_q75[k]:.3g}]  cl {r.cl_loss_median[k]:.3g} "
            f"[{r.cl_loss_q25[k]:.3g}, {r.cl_loss_q75[k]:.3g}]  GNR {r.gnr[k]:.3g}")
    frac = float(np.mean(r.adv_loss_median < r.cl_loss_median))
    lines.append(f"  D_adv median loss < D_cl median loss at {frac:.0%} of points; "
                 f"GNR range [{np.nanmin(r.gnr):.3g}, {np.nanmax(r.gnr):.3g}]"
                 if not np.all(np.isnan(r.gnr)) else
                 f"  D_adv median loss < D_cl median loss at {frac:.0%} of points; GNR not computed")
    return "\n".join(lines)


# =====================================================================================
# Fig. 3: layerwise decomposition of the target's gradient norm (paper 000 Sec. 4.4)
# =====================================================================================
@dataclass(frozen=True)
class LayerParts:
    """Partition of a model's parameter tensors into (first, last, rest)."""

    first_module: str
    last_module: str
    tensor_names: tuple[str, ...]
    part_of: tuple[int, ...]  # per tensor: 0 first, 1 last, 2 rest
    param_counts: tuple[int, int, int]

    @property
    def param_fraction(self) -> np.ndarray:
        c = np.array(self.param_counts, dtype=np.float64)
        return c / c.sum()


def _module_param_names(model: nn.Module, name: str) -> list[str]:
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"model has no module named {name!r}; pass one of "
                         f"{[n for n, m in modules.items() if n and any(True for _ in m.parameters())][:20]}")
    prefix = f"{name}." if name else ""
    return [prefix + n for n, p in modules[name].named_parameters() if p.requires_grad]


def resolve_parts(model: nn.Module, first: str = "auto", last: str = "auto") -> LayerParts:
    """Resolve ``first``/``last`` to modules (paper 000 Fig. 3: Conv1 and the final linear layer).

    ``first="auto"``: the first ``nn.Conv2d`` in module order, or the first module owning
    parameters directly if there is none; ``last="auto"``: ``model.classifier``.  Otherwise each is
    a module name from ``model.named_modules()``.
    """
    if first == "auto":
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if convs:
            first = convs[0]
        else:
            owners = [n for n, m in model.named_modules()
                      if any(p.requires_grad for p in m.parameters(recurse=False))]
            if not owners:
                raise ValueError("model has no trainable parameters")
            first = owners[0]
    if last == "auto":
        if not isinstance(getattr(model, "classifier", None), nn.Module):
            raise ValueError("last='auto' needs a model.classifier module; pass last=<module name>")
        last = next(n for n, m in model.named_modules() if m is model.classifier)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    first_names, last_names = set(_module_param_names(model, first)), set(_module_param_names(model, last))
    if not first_names or not last_names:
        raise ValueError(f"module {first if not first_names else last!r} has no trainable parameters")
    if first_names & last_names:
        raise ValueError(f"first ({first!r}) and last ({last!r}) share parameters; pick disjoint modules")
    part_of = tuple(0 if n in first_names else 1 if n in last_names else 2 for n in names)
    numel = dict((n, p.numel()) for n, p in model.named_parameters())
    counts = [0, 0, 0]
    for n, k in zip(names, part_of):
        counts[k] += numel[n]
    return LayerParts(first, last, tuple(names), part_of, (counts[0], counts[1], counts[2]))


@dataclass
class LayerSplit:
    """Target gradient ``||g_targ||`` split into (first, last, rest) at every point.

    ``sq_fraction[k, j] = ||g_part_j||^2 / ||g||^2`` (rows sum to 1; NaN where ``g = 0``),
    ``part_norms[k, j] = ||g_part_j||``, ``tensor_sq_norms[k, p]`` per parameter tensor.
    """

    iterations: np.ndarray
    lrs: np.ndarray
    steps_per_epoch: float
    target_label: int
    parts: LayerParts
    tensor_sq_norms: np.ndarray  # (points, P)
    part_norms: np.ndarray  # (points, 3)
    grad_norm: np.ndarray  # (points,)
    sq_fraction: np.ndarray  # (points, 3)

    @property
    def epochs(self) -> np.ndarray:
        return self.iterations / self.steps_per_epoch

    @property
    def param_counts(self) -> tuple[int, int, int]:
        return self.parts.param_counts

    @property
    def param_fraction(self) -> np.ndarray:
        return self.parts.param_fraction

    def to_dict(self) -> dict:
        return {
            "iterations": self.iterations.tolist(),
            "lrs": [None if math.isnan(v) else v for v in self.lrs.tolist()],
            "steps_per_epoch": self.steps_per_epoch,
            "parts": list(PART_NAMES), "target_label": self.target_label,
            "first_module": self.parts.first_module, "last_module": self.parts.last_module,
            "param_counts": list(self.param_counts),
            "param_fraction": self.param_fraction.tolist(),
            "grad_norm": self.grad_norm.tolist(),
            "part_norms": self.part_norms.tolist(),
            "sq_fraction": self.sq_fraction.tolist(),
        }


def layer_gradient_split(
    model_factory: Callable[[], nn.Module],
    run: TrainingRun,
    target_input: torch.Tensor,
    target_label: int | torch.Tensor | None = None,
    first: str = "auto",
    last: str = "auto",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> LayerSplit:
    """Fig. 3 of paper 000 (Sec. 4.4): ``||grad_theta L(z_targ; theta_t)||`` split into the first
    conv layer, the final linear layer and the rest, at every checkpoint and at theta_T.

    ``target_input`` is ONE example without a batch dimension (e.g. ``targets.inputs[j]``).
    ``target_label`` should be ``y_adv`` (the final model's prediction for a successful attack);
    ``None`` uses the final model's predicted label.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = _as_input(target_input, dev, dtype).unsqueeze(0)
    if target_label is None:
        with torch.no_grad():
            final = _load(model_factory, run.final, dev, dtype)
            label = int(predict(final(x))[0])
    else:
        t = torch.as_tensor(target_label)
        if t.numel() != 1 or t.is_floating_point():
            raise ValueError(f"target_label must be one class index (int or 1-element integer "
                             f"tensor), got {target_label!r}")
        label = int(t.reshape(-1)[0])
    y = torch.tensor([label], device=dev)

    pts = _points(run)
    parts: LayerParts | None = None
    tensor_sq = []
    for _, _, params in pts:
        model = _load(model_factory, params, dev, dtype)
        if parts is None:
            parts = resolve_parts(model, first, last)
        named = dict(model.named_parameters())
        ps = [named[n] for n in parts.tensor_names]
        loss = per_example_loss(model(x), y).sum()
        gs = torch.autograd.grad(loss, ps, allow_unused=True)
        tensor_sq.append([0.0 if g is None else float(g.double().pow(2).sum()) for g in gs])
    assert parts is not None
    tsq = np.array(tensor_sq, dtype=np.float64)
    part_of = np.array(parts.part_of)
    part_sq = np.stack([tsq[:, part_of == j].sum(axis=1) for j in range(3)], axis=1)
    total = part_sq.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = part_sq / total[:, None]
    return LayerSplit(
        iterations=np.array([p[0] for p in pts], dtype=np.int64),
        lrs=np.array([p[1] for p in pts], dtype=np.float64),
        steps_per_epoch=_steps_per_epoch(run), target_label=label, parts=parts,
        tensor_sq_norms=tsq, part_norms=np.sqrt(part_sq), grad_norm=np.sqrt(total), sq_fraction=frac,
    )


def summarize_layer_split(result: LayerSplit) -> str:
    """A few lines with the Fig. 3 numbers (mean squared-norm share vs parameter share)."""
    r = result
    mean = np.nanmean(r.sq_fraction, axis=0)
    pf = r.param_fraction
    titles = (f"first ({r.parts.first_module})", f"last ({r.parts.last_module})", "rest")
    lines = [f"target gradient split (paper 000 Fig. 3): label {r.target_label}, "
             f"{len(r.iterations)} points, ||g_targ|| from {r.grad_norm[0]:.3g} to {r.grad_norm[-1]:.3g}"]
    for j, t in enumerate(titles):
        ratio = mean[j] / pf[j] if pf[j] > 0 else math.nan
        lines.append(f"  {t:28s} params {r.param_counts[j]:>10,d} ({pf[j]:.4%})  "
                     f"mean share of ||g||^2 {mean[j]:.2%}  (x{ratio:.3g} per parameter)")
    lines.append(f"  first+last: {mean[0] + mean[1]:.2%} of ||g||^2 with {pf[0] + pf[1]:.4%} of the parameters")
    return "\n".join(lines)


# =====================================================================================
# Plots (seaborn / matplotlib, Agg backend)
# =====================================================================================
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def plot_loss_tracking(result: LossTracking, path: str | Path) -> Path:
    """Fig. 2: median loss (log y) of D_adv and D_cl with shaded IQR; GNR on a twin log axis."""
    plt, sns = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    r = result
    x = r.epochs
    pal = sns.color_palette("colorblind", 3)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    tiny = np.finfo(np.float64).tiny  # log axis: keep exact zeros plottable (ours)
    for name, med, lo, hi, c in (
        (f"D_adv loss (n={r.n_adv})", r.adv_loss_median, r.adv_loss_q25, r.adv_loss_q75, pal[0]),
        (f"D_cl loss (n={r.n_cl})", r.cl_loss_median, r.cl_loss_q25, r.cl_loss_q75, pal[1]),
    ):
        ax.plot(x, np.maximum(med, tiny), color=c, marker=".", label=name)
        ax.fill_between(x, np.maximum(lo, tiny), np.maximum(hi, tiny), color=c, alpha=0.25, linewidth=0)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("per-example loss (median, IQR)")
    handles, labels = ax.get_legend_handles_labels()
    if not np.all(np.isnan(r.gnr)):
        ax2 = ax.twinx()
        ax2.plot(x, r.gnr, color=pal[2], linestyle="--", marker=".", label="GNR (Eq. 6)")
        finite = r.gnr[np.isfinite(r.gnr)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 10:  # ours
            ax2.set_yscale("log")
        ax2.set_ylabel("gradient norm ratio adv / cl")
        ax2.grid(False)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best", fontsize="small")
    ax.set_title("Intra-training loss tracking (paper 000 Fig. 2)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_layer_split(results: Sequence[LayerSplit], labels: Sequence[str], path: str | Path) -> Path:
    """Fig. 3: stacked squared-norm shares of (first, last, rest) over training, one panel per run."""
    if len(results) == 0:
        raise ValueError("plot_layer_split needs at least one LayerSplit")
    if len(labels) != len(results):
        raise ValueError(f"got {len(results)} results but {len(labels)} labels")
    plt, sns = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pal = sns.color_palette("colorblind", 3)
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False, sharey=True)
    for ax, r, lab in zip(axes[0], results, labels):
        pf = r.param_fraction
        names = (f"{r.parts.first_module} ({pf[0]:.2%} of params)",
                 f"{r.parts.last_module} ({pf[1]:.2%})", f"rest ({pf[2]:.2%})")
        frac = np.nan_to_num(r.sq_fraction, nan=0.0)
        ax.stackplot(r.epochs, frac.T, labels=names, colors=pal, alpha=0.85)
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch")
        ax.set_title(lab)
        ax.legend(loc="lower right", fontsize="x-small")
    axes[0][0].set_ylabel("share of ||g_targ||^2")
    fig.suptitle("Layerwise target gradient (paper 000 Fig. 3)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
