"""``top-percent``: remove the top p% of the training set (paper 000 Sec. 4.5, Fig. 4)."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.api import RemovalRule
from benchmark.config import ConfigError
from benchmark.registry import removal_rules
from benchmark.removal_rules.top_k import top_mask


@dataclass(frozen=True)
class TopPercentConfig:
    percent: float

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ConfigError(f"top-percent: percent must be in [0, 100], got {self.percent}")


@removal_rules.register("top-percent", "Remove the top p% of the training set (paper 000 Sec. 4.5, Fig. 4)")
class TopPercent(RemovalRule):
    Config = TopPercentConfig

    def describe(self) -> str:
        return f"{self.config.percent:g}%"

    def select(self, scores, rng, budget=None):
        return top_mask(scores, int(round(self.config.percent / 100.0 * len(scores))))
