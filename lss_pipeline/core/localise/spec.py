"""What each category's localiser finds, on which series, on what canvas.

- ``scs``: the 5 canal points on the Sagittal T2/STIR stack (one canvas per study, depth
  channels across the stack).
- ``nfs``: the 10 foraminal points (left L1..L5, right L1..L5) on the Sagittal T1 stack; the
  depth channels run across the patient, so left and right are told apart in patient space.
- ``sbs``: left and right subarticular points on one Axial T2 slice per level; the slice is
  chosen from the sagittal levels carried into the axial series (``handoff.py``), the canvas
  is centred on the carried canal point.
"""

from __future__ import annotations

from dataclasses import dataclass

from lss_pipeline.core.constants import CATEGORY_SERIES, CONDITIONS, LEVELS
from lss_pipeline.core.localise.canvas import CanvasSpec

SAGITTAL_CANVAS = CanvasSpec(size=128, mm_per_px=2.0, depth=17, depth_step_mm=4.0)
AXIAL_CANVAS = CanvasSpec(size=64, mm_per_px=1.0, depth=1, depth_step_mm=0.0)


@dataclass(frozen=True)
class LocaliserSpec:
    category: str
    series_description: str
    # (condition, level) of each output channel; level None: the level comes from the slice (sbs)
    points: tuple[tuple[str, str | None], ...]
    canvas: CanvasSpec
    per_level: bool  # one canvas per level (axial) instead of one per series (sagittal)
    sigma_px: float  # heatmap target width, canvas pixels

    @property
    def n_points(self) -> int:
        return len(self.points)

    @property
    def mirror_swap(self) -> list[int] | None:
        """Channel each point becomes when the canvas is mirrored left <-> right (depth canvases only)."""
        if self.canvas.depth <= 1:
            return None
        swap = []
        for condition, level in self.points:
            mirrored = condition.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right")
            swap.append(self.points.index((mirrored, level)))
        return swap

    def channel(self, condition: str, level: str) -> int | None:
        key = (condition, None if self.per_level else level)
        return self.points.index(key) if key in self.points else None


def _conditions(category: str) -> list[str]:
    return [c[0] for c in CONDITIONS if c[1] == category]


SPECS: dict[str, LocaliserSpec] = {
    "scs": LocaliserSpec(
        category="scs",
        series_description=CATEGORY_SERIES["scs"],
        points=tuple((c, lvl) for c in _conditions("scs") for lvl in LEVELS),
        canvas=SAGITTAL_CANVAS,
        per_level=False,
        sigma_px=2.5,
    ),
    "nfs": LocaliserSpec(
        category="nfs",
        series_description=CATEGORY_SERIES["nfs"],
        points=tuple((c, lvl) for c in _conditions("nfs") for lvl in LEVELS),
        canvas=SAGITTAL_CANVAS,
        per_level=False,
        sigma_px=2.5,
    ),
    "sbs": LocaliserSpec(
        category="sbs",
        series_description=CATEGORY_SERIES["sbs"],
        points=tuple((c, None) for c in _conditions("sbs")),
        canvas=AXIAL_CANVAS,
        per_level=True,
        sigma_px=2.5,
    ),
}


def spec_for(category: str) -> LocaliserSpec:
    if category not in SPECS:
        raise ValueError(f"category {category!r} is not one of {sorted(SPECS)}")
    return SPECS[category]
