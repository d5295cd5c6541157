"""Localise the 25 condition x level points of one study from its DICOMs and the three localisers.

1. ``scs`` on the Sagittal T2/STIR stack and ``nfs`` on the Sagittal T1 stack: one canvas
   each, every point's (column, row, depth) carried to patient space, then to the nearest
   native slice (instance, x, y).
2. The levels go to the axial series through patient space (``handoff.py``); per level the
   nearest axial slice, over every stack, is cut as a canvas around the carried point and
   ``sbs`` finds the left and right points on it.

Every one of the 25 rows comes back; a point that cannot be given says why in ``status``
(``POINT_STATUSES``) and ``detail``, and the other rows are still localised.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from lss_pipeline.core.constants import CONDITION_CATEGORY, CONDITION_STEM, CONDITIONS, LEVEL_SLUGS, LEVELS
from lss_pipeline.core.localise.canvas import Canvas, CanvasSpec
from lss_pipeline.core.localise.data import project_to_plane
from lss_pipeline.core.localise.handoff import level_points, nearest_slice
from lss_pipeline.core.localise.model import PointLocaliser
from lss_pipeline.core.localise.series import PixelCache, Stack, series_of, study_stacks
from lss_pipeline.core.localise.spec import spec_for

OK = "ok"
SERIES_MISSING = "series_missing"
NO_LOCALISER = "no_localiser"
NO_LEVELS = "no_levels"
NOT_COVERED = "level_not_covered"
UNREADABLE = "unreadable"
POINT_STATUSES: dict[str, str] = {
    OK: "localised",
    SERIES_MISSING: "the study has no series of the type this condition is graded on",
    NO_LOCALISER: "no localiser model for this category",
    NO_LEVELS: "no sagittal series gave the disc level the axial slice is chosen by",
    NOT_COVERED: "no axial slice passes near the level",
    UNREADABLE: "the series' pixels or geometry could not be read",
}

POINTS_SCHEMA: dict[str, Any] = {
    "study_id": pl.Int64, "row_id": pl.Utf8, "category": pl.Utf8, "condition": pl.Utf8, "side": pl.Utf8,
    "level": pl.Utf8, "series_id": pl.Int64, "series_description": pl.Utf8, "instance_number": pl.Int64,
    "x": pl.Float64, "y": pl.Float64, "point_x_mm": pl.Float64, "point_y_mm": pl.Float64,
    "point_z_mm": pl.Float64, "confidence": pl.Float64, "status": pl.Utf8, "detail": pl.Utf8,
}  # fmt: skip


def row_id(study_id: int, condition: str, level: str) -> str:
    return f"{study_id}_{CONDITION_STEM[condition]}_{LEVEL_SLUGS[LEVELS.index(level)]}"


@dataclass
class StudyPoints:
    study_id: int
    points: pl.DataFrame  # POINTS_SCHEMA, the 25 rows in train.csv order
    timings: dict[str, float] = field(default_factory=dict)

    def found(self) -> pl.DataFrame:
        return self.points.filter(pl.col("status") == OK)


def _run(model: PointLocaliser, canvases: list[Canvas]) -> np.ndarray:
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([c.image for c in canvases])).float()
        return model.eval()(x).numpy()


def _on_slice(canvas: Canvas, point: np.ndarray) -> dict[str, Any]:
    """The instance and pixel of the canvas's native slice nearest ``point`` (clamped into the image)."""
    native, x, y, _ = canvas.nearest_slice(point)
    x = float(np.clip(x, 0.0, native.columns - 1e-3))
    y = float(np.clip(y, 0.0, native.rows - 1e-3))
    return {"instance_number": native.instance_number, "x": x, "y": y}


def _spec_of(model: PointLocaliser, category: str) -> CanvasSpec:
    return CanvasSpec(**model.canvas) if model.canvas else spec_for(category).canvas  # type: ignore[arg-type]


def _sagittal(
    category: str,
    stacks: dict[int, list[Stack]],
    meta: pl.DataFrame,
    model: PointLocaliser,
    pixels: PixelCache,
) -> tuple[dict[tuple[str, str], dict[str, Any]], str, str]:
    """Points of a sagittal category keyed by (condition, level), or ({}, status, detail)."""
    spec = spec_for(category)
    series = [s for s in series_of(meta, spec.series_description) if s in stacks]
    if not series:
        return {}, SERIES_MISSING, f"no {spec.series_description} series"
    stack = stacks[series[0]][0]
    try:
        canvas = stack.canvas(pixels, _spec_of(model, category))
    except Exception as exc:  # an unreadable series costs its points, never the study
        return {}, UNREADABLE, f"series {stack.series_id}: {type(exc).__name__}: {exc}"
    out = {}
    for (condition, level), (col, row, depth, conf) in zip(spec.points, _run(model, [canvas])[0]):
        assert level is not None
        point = canvas.to_patient(np.asarray(col), np.asarray(row), np.asarray(depth))
        out[(condition, level)] = {
            "series_id": stack.series_id,
            "series_description": spec.series_description,
            **_on_slice(canvas, point),
            "point": point,
            "confidence": float(conf),
        }
    return out, OK, ""


def _axial(
    stacks: dict[int, list[Stack]],
    meta: pl.DataFrame,
    model: PointLocaliser,
    pixels: PixelCache,
    levels: dict[str, np.ndarray],
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, tuple[str, str]]]:
    """sbs points keyed by (condition, level), and (status, detail) of the levels without."""
    spec = spec_for("sbs")
    axial = [stack for s in series_of(meta, spec.series_description) for stack in stacks.get(s, [])]
    if not axial:
        return {}, {lvl: (SERIES_MISSING, f"no {spec.series_description} series") for lvl in LEVELS}
    if not levels:
        return {}, {lvl: (NO_LEVELS, POINT_STATUSES[NO_LEVELS]) for lvl in LEVELS}
    offset = float(model.depth_offset_mm)
    canvas_spec = _spec_of(model, "sbs")
    missing: dict[str, tuple[str, str]] = {}
    chosen: list[tuple[str, Canvas, Stack]] = []
    for level in LEVELS:
        if level not in levels:
            missing[level] = (NO_LEVELS, "")
            continue
        choice = nearest_slice(axial, levels[level], offset)
        if choice is None:
            missing[level] = (NOT_COVERED, "")
            continue
        centre = project_to_plane(levels[level], choice.stack, choice.index)
        try:
            canvas = choice.stack.canvas(pixels, canvas_spec, centre=centre, only=[choice.index])
        except Exception as exc:
            missing[level] = (UNREADABLE, f"series {choice.stack.series_id}: {type(exc).__name__}: {exc}")
            continue
        chosen.append((level, canvas, choice.stack))
    out = {}
    if chosen:
        preds = _run(model, [c for _, c, _ in chosen])
        for (level, canvas, stack), pred in zip(chosen, preds):
            for (condition, _), (col, row, _, conf) in zip(spec.points, pred):
                point = canvas.to_patient(np.asarray(col), np.asarray(row), np.asarray(0.0))
                out[(condition, level)] = {
                    "series_id": stack.series_id,
                    "series_description": spec.series_description,
                    **_on_slice(canvas, point),
                    "point": point,
                    "confidence": float(conf),
                }
    return out, missing


def localise_study(
    study_id: int,
    metadata: pl.DataFrame,
    pixels: PixelCache,
    models: Mapping[str, PointLocaliser],
    *,
    known_levels: Mapping[str, np.ndarray] | None = None,
) -> StudyPoints:
    """The 25 points of one study; ``metadata`` holds its rows (with ``series_description``).

    ``known_levels`` (level -> patient point) replaces the sagittal levels for the axial slice
    choice (used to measure the ``sbs`` localiser before a sagittal one exists).
    """
    started = time.perf_counter()
    decode_before = pixels.decode_s
    meta = metadata.filter(pl.col("study_id") == study_id)
    stacks = study_stacks(meta)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    status: dict[tuple[str, str], tuple[str, str]] = {}
    for category in ("scs", "nfs"):
        keys = [(c, lvl) for c in (x[0] for x in CONDITIONS if x[1] == category) for lvl in LEVELS]
        if category not in models:
            status.update({k: (NO_LOCALISER, f"no {category} localiser") for k in keys})
            continue
        points, state, detail = _sagittal(category, stacks, meta, models[category], pixels)
        found.update(points)
        if state != OK:
            status.update({k: (state, detail) for k in keys})
    canal = {lvl: p["point"] for (c, lvl), p in found.items() if CONDITION_CATEGORY[c] == "scs"}
    left = {lvl: p["point"] for (c, lvl), p in found.items() if c == "Left Neural Foraminal Narrowing"}
    right = {lvl: p["point"] for (c, lvl), p in found.items() if c == "Right Neural Foraminal Narrowing"}
    sbs_conditions = [c[0] for c in CONDITIONS if c[1] == "sbs"]
    if "sbs" in models:
        levels = dict(known_levels) if known_levels is not None else level_points(canal, left, right)
        points, missing = _axial(stacks, meta, models["sbs"], pixels, levels)
        found.update(points)
        status.update({(c, lvl): state for lvl, state in missing.items() for c in sbs_conditions})
    else:
        status.update(
            {(c, lvl): (NO_LOCALISER, "no sbs localiser") for c in sbs_conditions for lvl in LEVELS}
        )

    rows = []
    for condition, category, side, _ in CONDITIONS:
        for level in LEVELS:
            hit = found.get((condition, level))
            state, detail = (OK, "") if hit is not None else status.get((condition, level), (UNREADABLE, ""))
            point = hit["point"] if hit is not None else np.full(3, np.nan)
            rows.append(
                {
                    "study_id": study_id,
                    "row_id": row_id(study_id, condition, level),
                    "category": category,
                    "condition": condition,
                    "side": side,
                    "level": level,
                    "series_id": hit["series_id"] if hit else None,
                    "series_description": hit["series_description"] if hit else None,
                    "instance_number": hit["instance_number"] if hit else None,
                    "x": hit["x"] if hit else None,
                    "y": hit["y"] if hit else None,
                    "point_x_mm": float(point[0]) if hit else None,
                    "point_y_mm": float(point[1]) if hit else None,
                    "point_z_mm": float(point[2]) if hit else None,
                    "confidence": hit["confidence"] if hit else None,
                    "status": state,
                    "detail": detail or None,
                }
            )
    decode_s = pixels.decode_s - decode_before
    total = time.perf_counter() - started
    return StudyPoints(
        study_id,
        pl.DataFrame(rows, schema=POINTS_SCHEMA, orient="row"),
        {"decode_s": decode_s, "localise_s": total - decode_s},
    )
