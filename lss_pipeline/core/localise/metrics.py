"""How far predicted points are from the labelled ones, per point and per category.

Per labelled point (its study must have been localised):

- ``in_plane_mm``: distance, within the labelled slice's plane, between the labelled point and
  the predicted point as cut (on its predicted slice);
- ``through_plane_mm`` / ``through_plane_slices``: distance between the predicted and the
  labelled slice along the labelled slice's normal, in mm and in slice steps of that series;
- ``within_half_window``: the labelled point lies inside the crop cut at the prediction
  (in-plane error at most half the crop side, slice off by at most half the crop's slices);
- ``level_correct``: the predicted point is nearer its own level's labelled point than any
  other level's of the same condition (3D, patient space).

A point the localiser could not give counts as wrong (NaN errors, not within, wrong level).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.crops.geometry import SliceGeometry, pixel_to_patient
from lss_pipeline.core.localise.data import labelled_points

ERROR_SCHEMA: dict[str, Any] = {
    "study_id": pl.Int64, "row_id": pl.Utf8, "category": pl.Utf8, "condition": pl.Utf8, "level": pl.Utf8,
    "localised": pl.Boolean, "same_series": pl.Boolean, "in_plane_mm": pl.Float64,
    "through_plane_mm": pl.Float64, "through_plane_slices": pl.Float64, "within_half_window": pl.Boolean,
    "level_correct": pl.Boolean,
}  # fmt: skip
SUMMARY_COLUMNS = (
    "category", "points", "localised_share", "in_plane_median_mm", "in_plane_p90_mm",
    "through_plane_median_mm", "through_plane_p90_mm", "exact_slice_share", "through_plane_mean_slices",
    "within_half_window_share", "level_accuracy",
)  # fmt: skip


def _geometry_lookup(metadata: pl.DataFrame) -> dict[tuple[int, int], dict[str, Any]]:
    return {(int(r["series_id"]), int(r["instance_number"])): r for r in metadata.iter_rows(named=True)}


def _series_step(metadata: pl.DataFrame) -> dict[int, float]:
    """Median slice step (mm) per series, along each slice's own normal."""
    out: dict[int, float] = {}
    for (series_id,), df in metadata.partition_by("series_id", as_dict=True).items():
        pos = df["slice_position"].drop_nulls().to_numpy() if "slice_position" in df.columns else np.zeros(0)
        gaps = np.diff(np.sort(pos))
        gaps = gaps[gaps > 1e-6]
        out[int(series_id)] = float(np.median(gaps)) if gaps.size else float("nan")
    return out


def point_errors(
    predicted: pl.DataFrame, labels: pl.DataFrame, metadata: pl.DataFrame, *, crop_mm: float, slices: int
) -> pl.DataFrame:
    """One row per labelled point of the predicted studies (``ERROR_SCHEMA``)."""
    studies = predicted["study_id"].unique().to_list()
    truth = pl.concat(
        [labelled_points(labels, c).filter(pl.col("study_id").is_in(studies)) for c in ("scs", "nfs", "sbs")]
    )
    meta = metadata.filter(pl.col("study_id").is_in(studies))
    geom = _geometry_lookup(meta)
    steps = _series_step(meta)
    pred = {r["row_id"]: r for r in predicted.iter_rows(named=True)}

    true_points: dict[str, np.ndarray] = {}
    for r in truth.iter_rows(named=True):
        g_row = geom.get((int(r["series_id"]), int(r["instance_number"])))
        if g_row is not None:
            true_points[r["row_id"]] = pixel_to_patient(SliceGeometry.from_row(g_row), r["x"], r["y"])

    rows = []
    for r in truth.iter_rows(named=True):
        p = pred.get(r["row_id"])
        t_point = true_points.get(r["row_id"])
        out = {
            "study_id": r["study_id"], "row_id": r["row_id"], "category": r["category"],
            "condition": r["condition"], "level": r["level"], "localised": False, "same_series": False,
            "in_plane_mm": None, "through_plane_mm": None, "through_plane_slices": None,
            "within_half_window": False, "level_correct": False,
        }  # fmt: skip
        p_geom_row = None if p is None or p["instance_number"] is None else geom.get(
            (int(p["series_id"]), int(p["instance_number"])))  # fmt: skip
        if p is not None and p["status"] == "ok" and t_point is not None and p_geom_row is not None:
            t_geom = SliceGeometry.from_row(geom[(int(r["series_id"]), int(r["instance_number"]))])
            p_geom = SliceGeometry.from_row(p_geom_row)
            cut = pixel_to_patient(p_geom, p["x"], p["y"])  # the point as cut, on its slice
            d = cut - t_point
            normal = t_geom.normal
            in_plane = float(np.linalg.norm(d - (d @ normal) * normal))
            through_mm = abs(float((p_geom.ipp - t_geom.ipp) @ normal))
            same = int(p["series_id"]) == int(r["series_id"])
            step = steps.get(int(r["series_id"]), float("nan"))
            through_slices = float(np.round(through_mm / step)) if same and step > 0 else float("nan")
            others = [
                true_points[o["row_id"]]
                for o in truth.filter(
                    (pl.col("study_id") == r["study_id"]) & (pl.col("condition") == r["condition"])
                ).iter_rows(named=True)
                if o["row_id"] in true_points
            ]
            dists = [float(np.linalg.norm(cut - q)) for q in others]
            level_ok = float(np.linalg.norm(cut - t_point)) <= min(dists) + 1e-9
            out.update(
                localised=True,
                same_series=same,
                in_plane_mm=in_plane,
                through_plane_mm=through_mm,
                through_plane_slices=through_slices,
                within_half_window=bool(
                    in_plane <= crop_mm / 2 and (np.isnan(through_slices) or through_slices <= slices // 2)
                ),
                level_correct=bool(level_ok),
            )
        rows.append(out)
    return pl.DataFrame(rows, schema=ERROR_SCHEMA, orient="row")


def _quantile(values: np.ndarray, q: float) -> float | None:
    return float(np.quantile(values, q)) if values.size else None


def _share(flags: pl.Series) -> float | None:
    return float(flags.cast(pl.Float64).mean()) if len(flags) else None  # type: ignore[arg-type]


def summarise(errors: pl.DataFrame) -> pl.DataFrame:
    """One row per category (``SUMMARY_COLUMNS``)."""
    rows = []
    for (category,), df in sorted(errors.partition_by("category", as_dict=True).items()):
        loc = df.filter(pl.col("localised"))
        in_plane = loc["in_plane_mm"].drop_nulls().to_numpy()
        through = loc["through_plane_mm"].drop_nulls().to_numpy()
        slices = loc["through_plane_slices"].drop_nans().drop_nulls().to_numpy()
        rows.append(
            {
                "category": category,
                "points": df.height,
                "localised_share": loc.height / df.height if df.height else None,
                "in_plane_median_mm": _quantile(in_plane, 0.5),
                "in_plane_p90_mm": _quantile(in_plane, 0.9),
                "through_plane_median_mm": _quantile(through, 0.5),
                "through_plane_p90_mm": _quantile(through, 0.9),
                "exact_slice_share": float((slices == 0).mean()) if slices.size else None,
                "through_plane_mean_slices": float(slices.mean()) if slices.size else None,
                "within_half_window_share": _share(df["within_half_window"]),
                "level_accuracy": _share(df["level_correct"]),
            }
        )
    schema = {
        c: (pl.Utf8 if c == "category" else pl.Int64 if c == "points" else pl.Float64)
        for c in SUMMARY_COLUMNS
    }
    return pl.DataFrame(rows, schema=schema, orient="row")
