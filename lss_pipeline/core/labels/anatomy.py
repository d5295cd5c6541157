"""Labels that make anatomical sense, checked in patient space.

Each labelled point (pixel column ``x``, row ``y`` on its instance) becomes a patient
coordinate in millimetres, LPS (+x the patient's left, +y posterior, +z head), from the
instance's ImagePositionPatient, ImageOrientationPatient and PixelSpacing in
``dicom_metadata`` (the convention of ``core/crops/geometry.py``). Then, per study and
condition (the five levels of one condition are one annotator's series of clicks):

- ``level_order``: each level lies head-wards (+z) of the next one down (L1/L2 above L2/L3 …).
  Measured: how far the upper level lies above the lower one, mm (offenders: <= 0).
- ``level_spacing``: adjacent levels of a correctly ordered pair lie 15–60 mm apart per level
  step. An adult lumbar motion segment (vertebral body 25–30 mm + disc 5–12 mm) spans about
  30–45 mm from disc to disc; 15 mm is half the smallest (two levels clicked on one disc),
  60 mm is 1.5 × the largest (a skipped level gives 2 steps' worth). Measured: mm per step.
- ``wrong_side`` (subarticular) / ``foramen_slice_side`` (foraminal): a left point lies at least
  2 mm on the patient's left of the canal mid-line, a right point on the right. Recesses lie
  8–12 mm and foramina 15–25 mm from the mid-line; 2 mm absorbs click error and a mid-line
  slice's rounding. The mid-line is the spinal-canal point's x at the same level, else the
  median of the study's canal points, else the midpoint of the left/right pair. For a
  foraminal point on a sagittal slice the point's x is its slice's position: the fix is
  another slice. Measured: offset towards the labelled side, mm (offenders: < 2).
- ``lr_same_instance``: a left and a right foraminal point on the same instance (needs the
  CSV only; one sagittal slice cannot show both foramina). The side with fewer points there
  is listed (both on a tie). Measured: the instance number.
- ``far_off``: a point over 100 px off the spine line through the study's other levels of the
  condition (the line through the nearest levels above and below, else the two nearest on one
  side), measured across the line. 100 px is 30–90 mm at real pixel spacings (0.3–0.9 mm),
  far past a lordotic spine's bend between adjacent levels (about 10 mm). Measured: px at the
  point's own pixel spacing. Far-off points are left out of the level pairs.

A pair of levels gives at most one of ``level_order``/``level_spacing``; both rows are listed
(either may be the wrong click), each naming the other. Offenders are for a radiologist to fix: the
``labels`` check warns with a table; ``level_crops`` can leave them out by config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lss_pipeline.core.constants import LEVELS
from lss_pipeline.core.crops.geometry import IOP_COL_COLUMNS, IOP_ROW_COLUMNS, IPP_COLUMNS
from lss_pipeline.core.markdown import markdown_table

LEVEL_ORDER = "level_order"
LEVEL_SPACING = "level_spacing"
WRONG_SIDE = "wrong_side"
FORAMEN_SLICE_SIDE = "foramen_slice_side"
LR_SAME_INSTANCE = "lr_same_instance"
FAR_OFF = "far_off"

MIN_LEVEL_SPACING_MM = 15.0
MAX_LEVEL_SPACING_MM = 60.0
MIN_SIDE_OFFSET_MM = 2.0
FAR_OFF_PX = 100.0
# reason -> what it means (the check shows it beside the counts).
REASONS: dict[str, str] = {
    LEVEL_ORDER: "level not below the level above it (patient z)",
    LEVEL_SPACING: f"adjacent levels closer than {MIN_LEVEL_SPACING_MM:g} mm or further than "
    f"{MAX_LEVEL_SPACING_MM:g} mm apart per level step",
    WRONG_SIDE: f"subarticular point not at least {MIN_SIDE_OFFSET_MM:g} mm on its side of the canal "
    "mid-line",
    FORAMEN_SLICE_SIDE: f"foraminal slice not at least {MIN_SIDE_OFFSET_MM:g} mm on the point's side of the "
    "canal mid-line",
    LR_SAME_INSTANCE: "foraminal point on an instance holding as many or more points of the other side "
    "(needs no image)",
    FAR_OFF: f"over {FAR_OFF_PX:g} px off the spine line through the study's other levels of the condition",
}

OFFENDER_SCHEMA: dict[str, pl.DataType] = {
    "study_id": pl.Int64(),
    "row_id": pl.Utf8(),
    "condition": pl.Utf8(),
    "level": pl.Utf8(),
    "series_id": pl.Int64(),
    "instance_number": pl.Int64(),
    "reason": pl.Utf8(),
    "value": pl.Float64(),
    "unit": pl.Utf8(),
    "detail": pl.Utf8(),
}
_KEY = ("study_id", "series_id", "instance_number")
_POINT_COLUMNS = ("study_id", "row_id", "condition", "category", "side", "level", *_KEY[1:], "x", "y")


def _points(labels: pl.DataFrame) -> pl.DataFrame:
    """Label rows with a coordinate, and the level's index (0 = L1/L2)."""
    missing = [c for c in _POINT_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"labels lacks columns {missing}; has {labels.columns}")
    return (
        labels.filter(
            pl.col("x").is_not_null() & pl.col("y").is_not_null() & pl.col("series_id").is_not_null()
        )
        .select(_POINT_COLUMNS)
        .with_columns(
            pl.col("level")
            .replace_strict(LEVELS, list(range(len(LEVELS))), default=None, return_dtype=pl.Int64)
            .alias("level_index")
        )
    )


def patient_points(labels: pl.DataFrame, metadata: pl.DataFrame) -> pl.DataFrame:
    """Labelled points on an instance of ``metadata``, with ``px, py, pz`` (LPS mm) and ``spacing_mm``.

    ``P = IPP + x * spacing_col * row_dir + y * spacing_row * col_dir``; points whose instance is
    missing (the ``coordinates_point_at_instances`` check reports them) are left out.
    """
    geometry = (
        metadata.select(
            *_KEY, *IPP_COLUMNS, *IOP_ROW_COLUMNS, *IOP_COL_COLUMNS, "pixel_spacing_row", "pixel_spacing_col"
        )
        .unique(subset=list(_KEY), keep="first")
        .drop_nulls()
    )
    joined = _points(labels).join(geometry, on=list(_KEY), how="inner")

    def norm(columns: tuple[str, ...]) -> pl.Expr:
        return (sum(pl.col(c) ** 2 for c in columns) ** 0.5).clip(lower_bound=1e-12)  # type: ignore[union-attr]

    row_norm, col_norm = norm(IOP_ROW_COLUMNS), norm(IOP_COL_COLUMNS)
    along_row = pl.col("x") * pl.col("pixel_spacing_col") / row_norm
    along_col = pl.col("y") * pl.col("pixel_spacing_row") / col_norm
    return joined.with_columns(
        *(
            (pl.col(ipp) + along_row * pl.col(r) + along_col * pl.col(c)).alias(name)
            for name, ipp, r, c in zip(("px", "py", "pz"), IPP_COLUMNS, IOP_ROW_COLUMNS, IOP_COL_COLUMNS)
        ),
        ((pl.col("pixel_spacing_row") + pl.col("pixel_spacing_col")) / 2).alias("spacing_mm"),
    ).select(*_POINT_COLUMNS, "level_index", "px", "py", "pz", "spacing_mm")


def _offender(point: dict, reason: str, value: float, unit: str, detail: str) -> dict:
    return {
        "study_id": point["study_id"],
        "row_id": point["row_id"],
        "condition": point["condition"],
        "level": point["level"],
        "series_id": point["series_id"],
        "instance_number": point["instance_number"],
        "reason": reason,
        "value": float(value),
        "unit": unit,
        "detail": detail,
    }


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=OFFENDER_SCHEMA, orient="row")


def _xyz(point: dict) -> np.ndarray:
    return np.array([point["px"], point["py"], point["pz"]], dtype=np.float64)


def _merged(rows: list[dict]) -> pl.DataFrame:
    """One entry per row and reason (a row in two bad pairs keeps the first value, both details)."""
    return (
        _frame(rows)
        .group_by("row_id", "reason", maintain_order=True)
        .agg(pl.exclude("detail").first(), pl.col("detail").str.join("; "))
        .select(list(OFFENDER_SCHEMA))
    )


def level_offenders(points: pl.DataFrame) -> pl.DataFrame:
    """``level_order`` and ``level_spacing`` over each study × condition's adjacent levels.

    Both rows of a bad pair are listed (either may be the wrong click), each naming the other.
    """
    rows: list[dict] = []
    for group in points.drop_nulls("level_index").partition_by("study_id", "condition", maintain_order=True):
        ordered = group.sort("level_index").to_dicts()
        for upper, lower in zip(ordered, ordered[1:]):
            steps = lower["level_index"] - upper["level_index"]
            if steps == 0:  # one level twice: not a pair of levels
                continue
            above = upper["pz"] - lower["pz"]
            pair = f"{upper['level']} ({upper['row_id']}) / {lower['level']} ({lower['row_id']})"
            if above <= 0:
                reason, value, unit = LEVEL_ORDER, above, "mm"
                detail = f"{pair}: the lower level lies {-above:.1f} mm head-wards of the upper one"
            else:
                value = float(np.linalg.norm(_xyz(upper) - _xyz(lower))) / steps
                if MIN_LEVEL_SPACING_MM <= value <= MAX_LEVEL_SPACING_MM:
                    continue
                reason, unit = LEVEL_SPACING, "mm/level"
                detail = (
                    f"{pair}: {value:.1f} mm per level, expected "
                    f"{MIN_LEVEL_SPACING_MM:g}–{MAX_LEVEL_SPACING_MM:g}"
                )
            rows += [_offender(point, reason, value, unit, detail) for point in (upper, lower)]
    return _merged(rows)


def _midlines(points: pl.DataFrame) -> tuple[dict[tuple[int, str], float], dict[int, float]]:
    """Canal mid-line x per (study, level) and per study, from the spinal canal points."""
    canal = points.filter(pl.col("category") == "scs")
    by_level = canal.group_by("study_id", "level").agg(pl.col("px").median())
    by_study = canal.group_by("study_id").agg(pl.col("px").median())
    return (
        {(s, lvl): x for s, lvl, x in by_level.iter_rows()},
        {s: x for s, x in by_study.iter_rows()},
    )


def side_offenders(points: pl.DataFrame) -> pl.DataFrame:
    """Left/right points not on their side of the canal mid-line (``wrong_side``, ``foramen_slice_side``)."""
    at_level, of_study = _midlines(points)
    sided = points.filter(pl.col("side").is_in(["left", "right"]))
    # Fallback mid-line: the midpoint of the same condition category's left and right points at a level.
    pair_mid = {
        (s, cat, lvl): x
        for s, cat, lvl, x, n in sided.group_by("study_id", "category", "level")
        .agg(pl.col("px").mean(), pl.col("side").n_unique())
        .iter_rows()
        if n == 2
    }
    rows: list[dict] = []
    for point in sided.to_dicts():
        key = (point["study_id"], point["level"])
        if key in at_level:
            mid, source = at_level[key], f"spinal canal point at {point['level']}"
        elif point["study_id"] in of_study:
            mid, source = of_study[point["study_id"]], "median of the study's spinal canal points"
        elif (point["study_id"], point["category"], point["level"]) in pair_mid:
            mid = pair_mid[(point["study_id"], point["category"], point["level"])]
            source = "midpoint of the left and right points"
        else:
            continue
        sign = 1.0 if point["side"] == "left" else -1.0  # LPS: +x is the patient's left
        offset = sign * (point["px"] - mid)
        if offset >= MIN_SIDE_OFFSET_MM:
            continue
        foraminal = point["category"] == "nfs"
        actual = "on the mid-line" if abs(offset) < MIN_SIDE_OFFSET_MM else (
            f"{abs(offset):.1f} mm to the patient's {'right' if point['side'] == 'left' else 'left'}"
        )  # fmt: skip
        what = f"instance {point['instance_number']} (its slice)" if foraminal else "the point"
        rows.append(_offender(point, FORAMEN_SLICE_SIDE if foraminal else WRONG_SIDE, offset, "mm", (
            f"{point['side']} label but {what} lies {actual} of the canal mid-line ({source})"
        )))  # fmt: skip
    return _frame(rows)


def same_instance_offenders(labels: pl.DataFrame) -> pl.DataFrame:
    """Foraminal points on an instance that also holds points of the other side (CSV only).

    The side with fewer points on the instance is blamed (the slice belongs to the majority,
    e.g. one left point put on the slice of the five right ones); both sides on a tie.
    """
    foraminal = _points(labels).filter((pl.col("category") == "nfs") & pl.col("side").is_not_null())
    per_side = foraminal.group_by(*_KEY, "side").agg(pl.col("level").sort().alias("levels"))
    other = per_side.select(
        *_KEY,
        pl.when(pl.col("side") == "left").then(pl.lit("right")).otherwise(pl.lit("left")).alias("side"),
        pl.col("levels").alias("other_levels"),
    )
    mine = per_side.join(other, on=[*_KEY, "side"], how="inner").filter(
        pl.col("levels").list.len() <= pl.col("other_levels").list.len()
    )
    rows = []
    for point in foraminal.join(mine, on=[*_KEY, "side"], how="inner").sort("study_id", "row_id").to_dicts():
        opposite = "right" if point["side"] == "left" else "left"
        rows.append(_offender(point, LR_SAME_INSTANCE, point["instance_number"], "instance", (
            f"instance {point['instance_number']} of series {point['series_id']} also holds the {opposite} "
            f"foraminal point(s) at {', '.join(point['other_levels'])}"
        )))  # fmt: skip
    return _frame(rows)


def _spine_line(index: int, others: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(a point, unit direction) of the spine near level ``index``, through the nearest levels above and
    below, else the two nearest on one side; None when ``others`` cannot give one."""
    above = [o for o in others if o[0] < index]
    below = [o for o in others if o[0] > index]
    if above and below:
        p0, p1 = max(above, key=lambda o: o[0])[1], min(below, key=lambda o: o[0])[1]
    else:
        side = above or below
        if len(side) < 2:
            return None
        p0, p1 = (o[1] for o in sorted(side, key=lambda o: abs(o[0] - index))[:2])
    length = float(np.linalg.norm(p1 - p0))
    return (p0, (p1 - p0) / length) if length > 0 else None


def far_off_offenders(points: pl.DataFrame) -> pl.DataFrame:
    """Points over ``FAR_OFF_PX`` off the spine line through the condition's other levels.

    Only the distance across the line counts (along it is ``level_order``/``level_spacing``'s
    business, so a swapped pair is not "far off"); the worst point is removed and the rest
    measured again, so one bad click does not drag its neighbours in.
    """
    rows: list[dict] = []
    for group in points.drop_nulls("level_index").partition_by("study_id", "condition", maintain_order=True):
        left = group.unique("level_index", keep="first").sort("level_index").to_dicts()
        while len(left) >= 3:
            worst, worst_px, worst_mm = None, FAR_OFF_PX, 0.0
            for point in left:
                line = _spine_line(
                    point["level_index"], [(o["level_index"], _xyz(o)) for o in left if o is not point]
                )
                if line is None:
                    continue
                offset = _xyz(point) - line[0]
                mm = float(np.linalg.norm(offset - (offset @ line[1]) * line[1]))
                if mm / point["spacing_mm"] > worst_px:
                    worst, worst_px, worst_mm = point, mm / point["spacing_mm"], mm
            if worst is None:
                break
            rows.append(_offender(worst, FAR_OFF, worst_px, "px", (
                f"{worst_px:.0f} px ({worst_mm:.0f} mm) off the spine line through the study's other "
                f"{worst['condition']} levels"
            )))  # fmt: skip
            left = [p for p in left if p is not worst]
    return _frame(rows)


@dataclass(frozen=True)
class AnatomyReport:
    """What the anatomy check measured."""

    offenders: pl.DataFrame  # OFFENDER_SCHEMA, sorted by study and row
    points: int  # labelled points with a coordinate
    points_in_patient_space: int  # of those, on an instance with geometry (0 without metadata)
    skipped: str | None  # why the patient-space checks did not run, if they did not

    @property
    def counts(self) -> dict[str, int]:
        """Offending rows per reason (every reason, zeros included)."""
        found = dict(self.offenders.group_by("reason").len().iter_rows())
        return {reason: int(found.get(reason, 0)) for reason in REASONS}

    @property
    def offending_rows(self) -> int:
        return self.offenders["row_id"].n_unique()

    @property
    def offending_studies(self) -> int:
        return self.offenders["study_id"].n_unique()


def check_anatomy(labels: pl.DataFrame, metadata: pl.DataFrame | None) -> AnatomyReport:
    """Every check above; with ``metadata`` None only the CSV-only ones (``skipped`` says so)."""
    parts = [same_instance_offenders(labels)]
    n_points = _points(labels).height
    in_space, skipped = 0, None
    if metadata is None:
        skipped = "dicom_metadata is not built: only the checks that need no image geometry ran"
    else:
        points = patient_points(labels, metadata)
        in_space = points.height
        far_off = far_off_offenders(points)
        # A point off the spine line would make both its pairs look badly spaced: pairs skip it.
        on_line = points.join(far_off.select("row_id"), on="row_id", how="anti")
        parts += [far_off, level_offenders(on_line), side_offenders(points)]
    offenders = pl.concat(parts).sort("study_id", "row_id", "reason")
    return AnatomyReport(offenders, n_points, in_space, skipped)


def offenders_markdown(offenders: pl.DataFrame, max_rows: int | None = 500) -> str:
    """The offender table for the UI: study, row (its id names condition and level), instance,
    reason, measured value and what is wrong."""
    measured = (
        pl.when(pl.col("unit") == "instance")
        .then(pl.format("instance {}", pl.col("value").cast(pl.Int64)))
        .otherwise(pl.format("{} {}", pl.col("value").round(1), pl.col("unit")))
    )
    shown = offenders.select(
        "study_id", "row_id", "series_id", "instance_number", "reason", measured.alias("measured"), "detail"
    )
    return markdown_table(shown, max_rows=max_rows)


def exclude_offenders(labels: pl.DataFrame, offenders: pl.DataFrame) -> pl.DataFrame:
    """``labels`` without the offending rows (by ``row_id``)."""
    return labels.join(offenders.select("row_id").unique(), on="row_id", how="anti")
