"""A PNG per series: the slices that carry predicted points, each point drawn with its grade.

Like the synthetic contact sheet: a marker per point coloured by the most likely grade (green
Normal/Mild, amber Moderate, red Severe), labelled with condition, level and that probability.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import CLASS_NAMES, LEVELS, SEVERITIES

GRADE_COLOURS = ("#3ddc84", "#ffb300", "#ff3d3d")
UNGRADED_COLOUR = "#9e9e9e"
SHORT = {
    "Spinal Canal Stenosis": "SCS", "Left Neural Foraminal Narrowing": "L NFN",
    "Right Neural Foraminal Narrowing": "R NFN", "Left Subarticular Stenosis": "L SS",
    "Right Subarticular Stenosis": "R SS",
}  # fmt: skip
MAX_PANELS = 8


def _display(pixels: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(pixels, (1, 99.5))
    return np.clip((pixels - lo) / max(hi - lo, 1e-6), 0, 1)


def render_series_overlay(
    table: pl.DataFrame,
    series_id: int,
    metadata: pl.DataFrame,
    pixels: Callable[[str], np.ndarray],
    out_png: Path,
    *,
    title: str,
) -> Path:
    """Draw the points of ``series_id`` in ``table`` (points + ``normal_mild/moderate/severe`` +
    ``graded``) on their slices; ``pixels(rel_path)`` decodes an instance of ``metadata``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.filter((pl.col("series_id") == series_id) & (pl.col("status") == "ok"))
    instances = sorted(
        rows["instance_number"].unique().to_list(),
        key=lambda n: min(LEVELS.index(lv) for lv in rows.filter(pl.col("instance_number") == n)["level"]),
    )[:MAX_PANELS]
    n_cols = max(1, min(len(instances), 4))
    n_rows = max(1, int(np.ceil(len(instances) / n_cols)))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 3.6 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    series_meta = metadata.filter(pl.col("series_id") == series_id)
    for ax, instance in zip(axes.ravel(), instances):
        path = series_meta.filter(pl.col("instance_number") == instance)["path"]
        try:
            ax.imshow(_display(pixels(path[0])), cmap="gray", interpolation="bilinear")
        except Exception as exc:  # noqa: BLE001 - an unreadable slice is shown as such
            ax.text(
                0.5,
                0.5,
                f"unreadable:\n{type(exc).__name__}",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_title(f"instance {instance}", fontsize=8)
        for p in rows.filter(pl.col("instance_number") == instance).iter_rows(named=True):
            probs = [float(p[c]) if p.get(c) is not None else float("nan") for c in CLASS_NAMES]
            graded = bool(p.get("graded")) and not any(np.isnan(probs))
            k = int(np.argmax(probs)) if graded else -1
            colour = GRADE_COLOURS[k] if graded else UNGRADED_COLOUR
            grade = f"{SEVERITIES[k]} {probs[k]:.2f}" if graded else "not graded"
            right = str(p["condition"]).startswith("Right")
            ax.plot(p["x"], p["y"], marker="+", markersize=9, mew=1.6, color=colour)
            ax.annotate(
                f"{SHORT.get(p['condition'], p['condition'])} {p['level']} {grade}",
                (p["x"], p["y"]),
                xytext=(-6, -3) if right else (6, -3),
                ha="right" if right else "left",
                textcoords="offset points",
                fontsize=5.5,
                color=colour,
            )
    # Wrapped to the figure's width (about 13 characters an inch at 9 pt): one panel is narrow.
    fig.suptitle(textwrap.fill(title, width=int(13 * 3.4 * n_cols)), fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out_png
