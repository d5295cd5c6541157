"""How the evaluation is configured: bootstrap size and seed, the champion rule and its margin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lss_pipeline.core.evaluate.bootstrap import DEFAULT_N_BOOT

ChampionRule = Literal["bootstrap", "difference"]
CHAMPION_RULES: tuple[str, ...] = ("bootstrap", "difference")


@dataclass(frozen=True)
class EvaluationOptions:
    # Bootstrap resamples of the test studies per interval; the seed makes the report reproducible.
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    # A challenger replaces the champion when its test macro recall beats the champion's by more than
    # `champion_margin_pts` percentage points: "bootstrap" asks it of the lower end of the paired 95 %
    # interval of the difference, "difference" of the paired difference itself.
    champion_rule: ChampionRule = "bootstrap"
    champion_margin_pts: float = 0.0

    def validate(self) -> EvaluationOptions:
        if self.n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {self.n_boot}")
        if self.champion_rule not in CHAMPION_RULES:
            raise ValueError(f"champion_rule must be one of {CHAMPION_RULES}, got {self.champion_rule!r}")
        if self.champion_margin_pts < 0:
            raise ValueError(f"champion_margin_pts must be >= 0, got {self.champion_margin_pts}")
        return self
