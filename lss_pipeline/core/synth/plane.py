"""One MR image plane in DICOM terms: position, orientation, matrix and pixel spacing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlicePlane:
    """One image plane in DICOM terms. ``pixel_spacing`` = (between rows, between columns)."""

    ipp: tuple[float, float, float]
    row_dir: tuple[float, float, float]  # direction of increasing column index
    col_dir: tuple[float, float, float]  # direction of increasing row index
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]
    thickness: float

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @classmethod
    def centered(cls, center, row_dir, col_dir, rows, cols, pixel_spacing, thickness) -> SlicePlane:
        row_dir, col_dir, center = (np.asarray(v, dtype=float) for v in (row_dir, col_dir, center))
        ipp = (
            center - row_dir * pixel_spacing[1] * (cols - 1) / 2 - col_dir * pixel_spacing[0] * (rows - 1) / 2
        )
        return cls(
            (float(ipp[0]), float(ipp[1]), float(ipp[2])),
            (float(row_dir[0]), float(row_dir[1]), float(row_dir[2])),
            (float(col_dir[0]), float(col_dir[1]), float(col_dir[2])),
            int(rows),
            int(cols),
            (float(pixel_spacing[0]), float(pixel_spacing[1])),
            float(thickness),
        )

    def project(self, point) -> tuple[float, float, float]:
        """(x = column, y = row, signed distance from the plane in mm) of a patient point."""
        d = np.asarray(point, dtype=float) - np.asarray(self.ipp)
        return (
            float(d @ np.asarray(self.row_dir) / self.pixel_spacing[1]),
            float(d @ np.asarray(self.col_dir) / self.pixel_spacing[0]),
            float(d @ self.normal),
        )

    def point(self, x: float, y: float) -> np.ndarray:
        """Patient position of image point (x = column, y = row): ``project`` inverted within the plane."""
        return (
            np.asarray(self.ipp)
            + x * self.pixel_spacing[1] * np.asarray(self.row_dir)
            + y * self.pixel_spacing[0] * np.asarray(self.col_dir)
        )

    def points(self) -> np.ndarray:
        """Patient position of every pixel centre, shape (rows, cols, 3)."""
        r = np.arange(self.rows, dtype=np.float32)[:, None, None] * self.pixel_spacing[0]
        c = np.arange(self.cols, dtype=np.float32)[None, :, None] * self.pixel_spacing[1]
        return (
            np.asarray(self.ipp, np.float32)
            + c * np.asarray(self.row_dir, np.float32)
            + r * np.asarray(self.col_dir, np.float32)
        )
