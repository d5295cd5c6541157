"""The thesis' claims, checked one by one on the held-out test split with a paired bootstrap.

Azmi (2025, Universitas Gadjah Mada; docs/dataset.md) reports, per category, that ConvNeXt had a
higher recall than ResNet-50 (by a stated number of points) and than Swin. Each claim here is the
direction: ConvNeXt's test macro recall minus the other architecture's, over the same test studies,
with a paired 95 % study-bootstrap interval:

- **reproduced**: the interval lies above zero;
- **not reproduced**: the interval lies below zero (the other architecture is better);
- **inconclusive**: the interval contains zero (this test split cannot tell).

Whether the thesis' stated gain lies inside the interval is reported beside it. When the two models
are not of comparable size (parameters or GMACs more than ``COMPARABLE_SIZE_RATIO`` apart) the
verdict compares sizes as much as architectures, and the claim says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from lss_pipeline.core.constants import CATEGORY_NAMES
from lss_pipeline.core.evaluate.bootstrap import PairedDifference, paired_macro_recall_difference, seed_for
from lss_pipeline.core.evaluate.load import Grid, Partition
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.table import as_int

# The thesis' published numbers (ConvNeXt, real RSNA data), percent and percentage points.
THESIS_CONVNEXT_MACRO_RECALL_PCT: dict[str, float] = {"scs": 76.17, "nfs": 69.31, "sbs": 72.65}
THESIS_GAIN_OVER_RESNET50_PTS: dict[str, float] = {"scs": 6.18, "nfs": 32.98, "sbs": 5.86}
THESIS_CONVNEXT_BEAT_SWIN: dict[str, bool] = {"scs": True, "nfs": True, "sbs": True}
THESIS_BASELINES: dict[str, str] = {"resnet": "ResNet-50", "swin": "Swin-T"}
ARCH_NAMES: dict[str, str] = {"resnet": "ResNet", "swin": "Swin"}
COMPARABLE_SIZE_RATIO = 1.5

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_CHECKED = (
    "reproduced",
    "not reproduced",
    "inconclusive",
    "not checked",
)


@dataclass(frozen=True)
class Size:
    params: int | None
    macs: int | None

    @property
    def gmacs(self) -> float | None:
        return self.macs / 1e9 if self.macs else None


@dataclass(frozen=True)
class Claim:
    category: str
    versus: str  # the other architecture: "resnet" | "swin"
    statement: str
    thesis_gain_pts: float | None  # stated size of the gain; None where the thesis gives none
    result: PairedDifference | None  # ConvNeXt − other, on the same test studies
    verdict: str
    convnext_size: Size | None
    other_size: Size | None

    @property
    def comparable_size(self) -> bool | None:
        a, b = self.convnext_size, self.other_size
        if a is None or b is None or not (a.params and b.params and a.macs and b.macs):
            return None
        ratios = (
            max(a.params, b.params) / min(a.params, b.params),
            max(a.macs, b.macs) / min(a.macs, b.macs),
        )
        return all(r <= COMPARABLE_SIZE_RATIO for r in ratios)

    @property
    def thesis_gain_inside(self) -> bool | None:
        if self.thesis_gain_pts is None or self.result is None:
            return None
        d = self.result.difference
        return bool(100 * d.lo <= self.thesis_gain_pts <= 100 * d.hi)


def verdict_of(result: PairedDifference | None) -> str:
    if result is None:
        return NOT_CHECKED
    if result.difference.lo > 0:
        return REPRODUCED
    if result.difference.hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def _size(partition: Partition | None) -> Size | None:
    if partition is None:
        return None
    return Size(as_int(partition.summary.get("params")), as_int(partition.summary.get("macs")))


def check_claims(grid: Grid, options: EvaluationOptions) -> list[Claim]:
    """Every claim of the thesis for the categories of ``grid``, ConvNeXt vs ResNet then vs Swin."""
    claims = []
    for category in grid.categories:
        convnext = grid.get("convnext", category)
        for versus in ("resnet", "swin"):
            other = grid.get(versus, category)
            if versus == "swin" and not THESIS_CONVNEXT_BEAT_SWIN[category]:
                continue
            gain = THESIS_GAIN_OVER_RESNET50_PTS[category] if versus == "resnet" else None
            thesis = THESIS_BASELINES[versus] + (f", {gain:+.2f} pts" if gain is not None else "")
            statement = (
                f"ConvNeXt has a higher macro recall than {ARCH_NAMES[versus]} on {category.upper()} "
                f"({CATEGORY_NAMES[category]}); thesis: vs {thesis}"
            )
            result = None
            if convnext is not None and other is not None:
                seed = seed_for(f"paired|convnext|{versus}|{category}", options.seed)
                result = paired_macro_recall_difference(convnext.test, other.test, options.n_boot, seed)
            claims.append(
                Claim(
                    category,
                    versus,
                    statement,
                    gain,
                    result,
                    verdict_of(result),
                    _size(convnext),
                    _size(other),
                )
            )
    return claims
