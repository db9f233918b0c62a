"""Gradient rules: a supported module's input ``a`` and output gradient ``delta`` -> one
feature per parameter tensor, one file per layer type, registered in :data:`RULES`."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from ..features import Feature
from .batchnorm import batchnorm_rule, batchnorm_supported
from .conv import conv_rule, conv_supported
from .embedding import embedding_rule, embedding_supported
from .groupnorm import groupnorm_rule
from .layernorm import layernorm_rule
from .linear import linear_rule

#: ``(module, a, delta, wanted parameter names) -> {parameter name: feature}``
RuleFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, set], dict[str, Feature]]


def _always(mod: nn.Module) -> bool:
    return True


class Rule(NamedTuple):
    """A rule and the test a module of its type must pass to use it."""

    fn: RuleFn
    supports: Callable[[nn.Module], bool] = _always


#: module type -> rule (looked up in this order; see :func:`rule_for`)
RULES: dict[type[nn.Module], Rule] = {
    nn.Linear: Rule(linear_rule),
    nn.Conv2d: Rule(conv_rule, conv_supported),
    nn.Conv1d: Rule(conv_rule, conv_supported),
    nn.BatchNorm1d: Rule(batchnorm_rule, batchnorm_supported),
    nn.BatchNorm2d: Rule(batchnorm_rule, batchnorm_supported),
    nn.BatchNorm3d: Rule(batchnorm_rule, batchnorm_supported),
    nn.LayerNorm: Rule(layernorm_rule),
    nn.GroupNorm: Rule(groupnorm_rule),
    nn.Embedding: Rule(embedding_rule, embedding_supported),
}


def rule_for(mod: nn.Module) -> RuleFn | None:
    """The rule of a module, or ``None`` (its parameters then use the torch.func fallback).

    A module matches a type of :data:`RULES` when it is an instance whose class keeps that
    type's ``forward`` (a subclass that overrides ``forward`` gets no rule: its forward may
    differ); the first match decides, and a module failing its type's test gets no rule."""
    for base, rule in RULES.items():
        if isinstance(mod, base) and type(mod).forward is base.forward:
            return rule.fn if rule.supports(mod) else None
    return None
