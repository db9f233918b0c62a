"""The protocol contract: how an experiment asks methods for scores and turns them into metrics.

A protocol is a registered kind (:data:`benchmark.registry.protocols`, entry-point group
``benchmark.protocols``).  Per trial the harness calls :meth:`Protocol.setup` once (``None``: the
attack did not succeed in this trial, so there is nothing to defend) and
:meth:`Protocol.evaluate` once per method; methods return scores, the protocol computes metrics.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from benchmark.config import ConfigError, build

if TYPE_CHECKING:  # the harness's trial type; protocols receive it, the contract does not build it
    from benchmark.trial import PreparedTrial


@dataclass
class MethodResult:
    """What :meth:`Protocol.evaluate` returns for one method of one trial."""

    metrics: dict[str, float]
    scores: np.ndarray | None
    granted: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


class Protocol(ABC):
    """Base class of every evaluation protocol.

    ``Params`` is a dataclass (unknown keys are an error); ``method_kinds`` names the registries
    whose methods the protocol evaluates (``defenses`` / ``target_rankers``);
    ``nothing_to_evaluate`` is the message recorded when :meth:`setup` returns ``None``.
    """

    Params: ClassVar[type]
    method_kinds: ClassVar[tuple[str, ...]] = ("defenses",)
    nothing_to_evaluate: ClassVar[str] = "no eligible target was flipped by the attack in this trial"

    def __init__(self, **params: Any) -> None:
        self.params = build(self.Params, params, what=f"protocol {type(self).__name__}")

    def probe_params(self) -> dict[str, Any]:
        """Parameter overrides for ``run --dry-run --probe``, whose model has trained a few steps:
        a protocol whose :meth:`setup` selects on what a trained model does (e.g. a misclassification
        window) widens the selection here so that the probe still reaches every method; sizes stay
        as configured.  Default: none."""
        return {}

    def for_probe(self) -> "Protocol":
        """This protocol rebuilt with :meth:`probe_params` over its own parameters."""
        over = self.probe_params()
        if not over:
            return self
        return type(self)(**{**asdict(self.params), **over})

    def check_method(self, method: Any) -> None:
        """Raise :class:`~benchmark.config.ConfigError` before any work when ``method`` cannot be
        evaluated by this protocol (default: it must score training examples)."""
        if not getattr(method, "scores_examples", True):
            raise ConfigError(f"{type(method).__name__} does not score training examples (the 'none' "
                              f"defense only measures the attack: attack-success, training-diagnostics, remove-and-retrain)")

    @abstractmethod
    def setup(self, trial: "PreparedTrial", rng: np.random.Generator) -> Any | None:
        """Per-trial state shared by every method (the same target for all, so comparisons are
        paired), or ``None`` when there is nothing to evaluate."""

    @abstractmethod
    def evaluate(self, trial: "PreparedTrial", state: Any, method: Any,
                 rng: np.random.Generator) -> MethodResult:
        """Run ``method`` under the protocol and compute its metrics."""
