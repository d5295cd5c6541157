"""Training samples of a localiser from the labels and the DICOMs: canvases and their point targets.

A labelled point (series, instance, x, y) becomes a patient point through its instance's
geometry, then canvas coordinates (column, row, depth mm). Sagittal categories give one sample
per study (the labelled series' stack); ``sbs`` one sample per labelled axial slice, centred
where inference will centre it: the level's canal point (the study's SCS label, projected into
the slice) when there is one, else the middle of the slice's labelled points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core.crops.geometry import pixel_to_patient
from lss_pipeline.core.localise.series import PixelCache, PixelReader, Stack, study_stacks
from lss_pipeline.core.localise.spec import LocaliserSpec

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass
class Sample:
    study_id: int
    series_id: int
    level: str | None  # sbs: the slice's level
    image: np.ndarray  # (channels, size, size) float16
    target: np.ndarray  # (K, 3) column, row, depth mm
    mask: np.ndarray  # (K,) bool
    # sbs: mm from the level's canal point to the labelled slice, along the stack normal
    slice_offset_mm: float | None = None


def labelled_points(labels: pl.DataFrame, category: str) -> pl.DataFrame:
    """Rows of ``category`` that carry a point (any grade, blank included: the point is still right)."""
    return labels.filter(
        (pl.col("category") == category)
        & pl.col("series_id").is_not_null()
        & pl.col("instance_number").is_not_null()
        & pl.col("x").is_not_null()
        & pl.col("y").is_not_null()
    )


def label_patient_point(stacks: dict[int, list[Stack]], row: dict) -> tuple[Stack, int, np.ndarray] | None:
    """(stack, slice index, patient point) of a labelled row; None when its instance is not readable."""
    for stack in stacks.get(int(row["series_id"]), []):
        if int(row["instance_number"]) in stack.instance_numbers:
            i = stack.instance_numbers.index(int(row["instance_number"]))
            return stack, i, pixel_to_patient(stack.geometries[i], float(row["x"]), float(row["y"]))
    return None


def _sagittal_sample(
    spec: LocaliserSpec, stacks: dict[int, list[Stack]], rows: list[dict], pixels: PixelCache
) -> Sample | None:
    located: list[tuple[dict, tuple[Stack, int, np.ndarray]]] = []
    for row in rows:
        hit = label_patient_point(stacks, row)
        if hit is not None:
            located.append((row, hit))
    if not located:
        return None
    # The stack most labels sit on.
    counts: dict[tuple[int, int], int] = {}
    for _, (stack, _, _) in located:
        counts[(stack.series_id, stack.stack_id)] = counts.get((stack.series_id, stack.stack_id), 0) + 1
    series_id, stack_id = max(counts, key=lambda k: counts[k])
    stack = next(s for s in stacks[series_id] if s.stack_id == stack_id)
    canvas = stack.canvas(pixels, spec.canvas)
    target = np.zeros((spec.n_points, 3), np.float32)
    mask = np.zeros(spec.n_points, bool)
    for row, (hit_stack, _, point) in located:
        k = spec.channel(row["condition"], row["level"])
        if k is None or hit_stack is not stack:
            continue
        col, r, depth = canvas.from_patient(point)
        target[k] = (col, r, depth)
        mask[k] = 0 <= col < spec.canvas.size and 0 <= r < spec.canvas.size
    if not mask.any():
        return None
    return Sample(stack.study_id, series_id, None, canvas.image.astype(np.float16), target, mask)


def project_to_plane(point: np.ndarray, stack: Stack, index: int) -> np.ndarray:
    geom = stack.geometries[index]
    return point - float((point - geom.ipp) @ geom.normal) * geom.normal


def _axial_samples(
    spec: LocaliserSpec,
    stacks: dict[int, list[Stack]],
    rows: list[dict],
    canal_points: dict[str, np.ndarray],
    pixels: PixelCache,
) -> list[Sample]:
    by_slice: dict[tuple[int, int, int, str], list[tuple[dict, np.ndarray]]] = {}
    for row in rows:
        hit = label_patient_point(stacks, row)
        if hit is None:
            continue
        stack, i, point = hit
        by_slice.setdefault((stack.series_id, stack.stack_id, i, row["level"]), []).append((row, point))
    out = []
    for (series_id, stack_id, i, level), hits in sorted(by_slice.items()):
        stack = next(s for s in stacks[series_id] if s.stack_id == stack_id)
        anchor = canal_points.get(level)
        centre = np.mean([p for _, p in hits], axis=0) if anchor is None else anchor
        canvas = stack.canvas(pixels, spec.canvas, centre=project_to_plane(centre, stack, i), only=[i])
        target = np.zeros((spec.n_points, 3), np.float32)
        mask = np.zeros(spec.n_points, bool)
        for row, point in hits:
            k = spec.channel(row["condition"], level)
            if k is None:
                continue
            col, r, _ = canvas.from_patient(point)
            target[k] = (col, r, 0.0)
            mask[k] = 0 <= col < spec.canvas.size and 0 <= r < spec.canvas.size
        offset = None if anchor is None else float((stack.geometries[i].ipp - anchor) @ stack.frame.n)
        if mask.any():
            out.append(
                Sample(
                    stack.study_id, series_id, level, canvas.image.astype(np.float16), target, mask, offset
                )
            )
    return out


def canal_points_of(labels: pl.DataFrame, stacks: dict[int, list[Stack]]) -> dict[str, np.ndarray]:
    """Level -> patient point of the study's labelled canal (SCS) points."""
    out = {}
    for row in labelled_points(labels, "scs").iter_rows(named=True):
        hit = label_patient_point(stacks, row)
        if hit is not None:
            out[row["level"]] = hit[2]
    return out


def build_samples(
    spec: LocaliserSpec,
    labels: pl.DataFrame,
    metadata: pl.DataFrame,
    raw_dir: Path,
    study_ids: Iterable[int],
    *,
    reader: PixelReader | None = None,
    progress: Progress | None = None,
) -> list[Sample]:
    """Samples of ``spec.category`` for ``study_ids`` (studies without a usable labelled series give none)."""
    ids = sorted({int(s) for s in study_ids})
    points = labelled_points(labels, spec.category).filter(pl.col("study_id").is_in(ids))
    need_scs = spec.per_level
    wanted = points["series_id"].unique().to_list()
    if need_scs:
        wanted += (
            labelled_points(labels, "scs")
            .filter(pl.col("study_id").is_in(ids))["series_id"]
            .unique()
            .to_list()
        )
    meta = metadata.filter(pl.col("study_id").is_in(ids) & pl.col("series_id").is_in(wanted))
    meta_by_study = {int(k[0]): df for k, df in meta.partition_by("study_id", as_dict=True).items()}
    labels_by_study = {int(k[0]): df for k, df in labels.filter(pl.col("study_id").is_in(ids)).partition_by(
        "study_id", as_dict=True).items()}  # fmt: skip
    samples: list[Sample] = []
    for n, study_id in enumerate(ids, start=1):
        study_meta = meta_by_study.get(study_id)
        rows = points.filter(pl.col("study_id") == study_id).to_dicts()
        if study_meta is not None and rows:
            stacks = study_stacks(study_meta)
            pixels = PixelCache(Path(raw_dir), reader)
            try:
                if spec.per_level:
                    canal = canal_points_of(labels_by_study[study_id], stacks)
                    samples.extend(_axial_samples(spec, stacks, rows, canal, pixels))
                else:
                    sample = _sagittal_sample(spec, stacks, rows, pixels)
                    if sample is not None:
                        samples.append(sample)
            except Exception as exc:  # one unreadable study costs its samples, never the training
                log.warning("study %s: no %s localiser sample (%s: %s)", study_id, spec.category,
                            type(exc).__name__, exc)  # fmt: skip
        if progress is not None:
            progress(n, len(ids))
    return samples
