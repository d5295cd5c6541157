"""A study's series as the localiser needs them: stacks, their geometry, decoded pixels (timed).

Rows are ``dicom_metadata`` rows (or the same columns from a study folder scan, see
``core/predict/study.py``). Stacks come from ``crops.stacks.assign_stacks``, so a series that
holds several stacks (an axial series acquired per disc) is handled as the crops handle it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.crops.geometry import NORMAL_COLUMNS, CropFrame, SliceGeometry, stack_normal
from lss_pipeline.core.crops.stacks import assign_stacks
from lss_pipeline.core.localise.canvas import Canvas, CanvasSpec, build_canvas, stack_centre

PixelReader = Callable[[Path], np.ndarray]


def read_dicom_pixels(path: Path) -> np.ndarray:
    from lss_pipeline.core.dicom.pixels import read_pixels

    return read_pixels(path)


@dataclass
class PixelCache:
    """Decodes each file once and keeps the seconds spent decoding.

    ``cache(rel_path)`` reads ``raw_dir / rel_path``; ``cache.read`` takes a full path and is a
    ``PixelReader``, so the crop code can share the same decoded pixels.
    """

    raw_dir: Path
    reader: PixelReader | None = None
    decode_s: float = 0.0
    n_decoded: int = 0
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, rel_path: str) -> np.ndarray:
        return self.read(self.raw_dir / rel_path)

    def read(self, path: Path) -> np.ndarray:
        key = str(path)
        if key not in self._cache:
            t0 = time.perf_counter()
            reader = self.reader or read_dicom_pixels
            self._cache[key] = np.asarray(reader(Path(path)), dtype=np.float32)
            self.decode_s += time.perf_counter() - t0
            self.n_decoded += 1
        return self._cache[key]


@dataclass
class Stack:
    """One stack of one series: metadata rows in position order and their geometry."""

    study_id: int
    series_id: int
    stack_id: int
    description: str | None
    rows: list[dict[str, Any]]
    geometries: list[SliceGeometry]

    @property
    def instance_numbers(self) -> list[int]:
        return [int(r["instance_number"]) for r in self.rows]

    @property
    def frame(self) -> CropFrame:
        return CropFrame.for_normal(
            stack_normal(np.array([[r[c] for c in NORMAL_COLUMNS] for r in self.rows]))
        )

    @property
    def centre(self) -> np.ndarray:
        return stack_centre(
            self.geometries, [r["rows"] for r in self.rows], [r["columns"] for r in self.rows]
        )

    def canvas(
        self,
        pixels: PixelCache,
        spec: CanvasSpec,
        centre: np.ndarray | None = None,
        only: list[int] | None = None,
    ) -> Canvas:
        """The stack (or its slices at positions ``only``) on a canvas around ``centre`` (default: own)."""
        keep = range(len(self.rows)) if only is None else only
        return build_canvas(
            [pixels(self.rows[i]["path"]) for i in keep],
            [self.geometries[i] for i in keep],
            [self.instance_numbers[i] for i in keep],
            self.frame,
            self.centre if centre is None else centre,
            spec,
        )


def study_stacks(metadata: pl.DataFrame) -> dict[int, list[Stack]]:
    """series_id -> its stacks (largest first) for the metadata rows of one study.

    Rows whose geometry cannot be used are left out (the header scan already quarantines most).
    """
    if metadata.height == 0:
        return {}
    meta = assign_stacks(metadata)
    out: dict[int, list[Stack]] = {}
    for (series_id, stack_id), df in meta.partition_by(["series_id", "stack_id"], as_dict=True).items():
        rows = df.sort(["stack_position", "instance_number"]).to_dicts()
        good, geoms = [], []
        for row in rows:
            try:
                geoms.append(SliceGeometry.from_row(row))
            except ValueError:
                continue
            good.append(row)
        if not good:
            continue
        out.setdefault(int(series_id), []).append(
            Stack(
                study_id=int(good[0]["study_id"]),
                series_id=int(series_id),
                stack_id=int(stack_id),
                description=good[0].get("series_description"),
                rows=good,
                geometries=geoms,
            )
        )
    for stacks in out.values():
        stacks.sort(key=lambda s: (-len(s.rows), s.stack_id))
    return out


def series_of(metadata: pl.DataFrame, description: str) -> list[int]:
    """Series ids of a study described ``description``, most instances first."""
    rows = metadata.filter(pl.col("series_description") == description)
    if rows.height == 0:
        return []
    counts = rows.group_by("series_id").len().sort(["len", "series_id"], descending=[True, False])
    return [int(s) for s in counts["series_id"]]
