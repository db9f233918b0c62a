"""Feature maps ``z -> phi(z)``: the specs a caller passes (:class:`GradientMap`,
:class:`RepresentationMap`) and what they bind to at one checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
from torch import nn

from .features import Factored, Feature
from .gradients import BoundGradientMap
from .outputs import output_function


class BoundMap(Protocol):
    """A feature map bound to one checkpoint's model."""

    names: list[str]  # layers, in order
    shapes: dict[str, torch.Size]  # parameter shape of each layer
    shift: dict[str, torch.Tensor] | None  # dense vector added to every example's gradient

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]: ...


class FeatureMap(Protocol):
    key: tuple  # equal keys => equal maps (used to detect symmetric training x training tiles)

    def bind(self, model: nn.Module, include: Sequence[str] | None) -> BoundMap: ...


def resolve_params(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """Names of the trainable parameters selected by ``layers`` (``None`` = all).  Each entry
    is a parameter name or a module name (selecting all parameters under it)."""
    names = getattr(model, "_influence_trainable", None)  # recorded before a bind froze them
    if names is None:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
    if layers is None:
        return list(names)
    if isinstance(layers, str):
        layers = [layers]
    chosen: list[str] = []
    for sel in layers:
        hit = [n for n in names if n == sel or n.startswith(sel + ".")]
        if not hit:
            modules = sorted({n.rsplit(".", 1)[0] for n in names if "." in n})
            raise ValueError(f"layer selector {sel!r} matches no trainable parameter; parameters "
                             f"live in modules {modules[:20]}{' ...' if len(modules) > 20 else ''}")
        chosen += [n for n in hit if n not in chosen]
    return [n for n in names if n in chosen]


@dataclass(frozen=True)
class GradientMap:
    """Map ``z -> grad_theta fn(z; theta)`` (per-example gradient of a scalar).

    ``fn``: ``"loss"`` (paper 000 Sec. 2), ``"gold_prob"``/``"gold_score"`` (paper 001 Eq. 4),
    ``"gold_logit"`` or a callable ``(logits, labels) -> (B,)``.
    ``param_l2``: adds ``param_l2 * sum_p ||p||^2`` to every example's objective (gradient
    ``2 * param_l2 * theta``), as the reference GAS loop does (influence_perf.md Sec. 1.8); the
    project default is 0 (paper 000 Sec. 2: gradients of the per-example loss).
    ``use_func``: compute every parameter with the torch.func fallback (for comparisons)."""

    fn: str | Callable = "loss"
    param_l2: float = 0.0
    use_func: bool = False

    @property
    def key(self) -> tuple:
        return ("grad", self.fn, self.param_l2, self.use_func)

    def bind(self, model: nn.Module, include: Sequence[str] | None) -> BoundGradientMap:
        """Bind to ``model`` (put in eval mode; its parameters are frozen, since the backward
        pass starts at the hooked modules' outputs: pass a private copy)."""
        return BoundGradientMap(model, resolve_params(model, include), output_function(self.fn),
                                self.param_l2, self.use_func)


@dataclass(frozen=True)
class RepresentationMap:
    """Map ``z -> c(z) (x) f(z)``: penultimate features ``f = model.features(x)`` times a
    per-example coefficient vector ``c = coefficient(logits, labels)`` ``(B, k)``, one layer named
    ``"representer"``.  ``<c_i (x) f_i, c_j (x) f_j> = (c_i . c_j) <f_i, f_j>``: representer point
    (paper 000 Eqs. 2 and 10) is a dot tile of two such maps."""

    coefficient: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    name: str = "representer"

    @property
    def key(self) -> tuple:
        return ("repr", self.coefficient, self.name)

    def bind(self, model: nn.Module, include: Sequence[str] | None) -> "BoundRepresentationMap":
        if not hasattr(model, "features") or not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise ValueError("representer point needs a model with .features(x) and a final "
                             "nn.Linear .classifier (the benchmark model-zoo contract)")
        return BoundRepresentationMap(model.eval(), self)


class BoundRepresentationMap:
    """:class:`RepresentationMap` bound to a model."""

    def __init__(self, model: nn.Module, spec: RepresentationMap) -> None:
        self.model, self.spec = model, spec
        self.names = [spec.name]
        self.shapes = {spec.name: model.classifier.weight.shape}
        self.shift = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]:
        f = self.model.features(x).reshape(len(x), -1)
        c = self.spec.coefficient(self.model.classifier(f), y).reshape(len(x), -1).to(f.dtype)
        return {self.spec.name: Factored(f[:, None, :, None], c[:, None, :, None])}


def as_map(m: str | Callable | FeatureMap) -> FeatureMap:
    """A feature map as is, or the :class:`GradientMap` of a named / callable scalar."""
    if isinstance(m, (GradientMap, RepresentationMap)) or hasattr(m, "bind"):
        return m
    return GradientMap(m)
