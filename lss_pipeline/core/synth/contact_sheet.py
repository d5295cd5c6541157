"""A PNG contact sheet of one study: its three series with the labelled points drawn."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import COORDINATES_CSV, LEVELS, SERIES_CSV, TRAIN_CSV, TRAIN_IMAGES

SEVERITY_COLORS = {"Normal/Mild": "#3ddc84", "Moderate": "#ffb300", "Severe": "#ff3d3d", "": "#9e9e9e"}
SHORT = {
    "Spinal Canal Stenosis": "SCS",
    "Left Neural Foraminal Narrowing": "L NFS",
    "Right Neural Foraminal Narrowing": "R NFS",
    "Left Subarticular Stenosis": "L SBS",
    "Right Subarticular Stenosis": "R SBS",
}


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is this an RSNA folder?")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pixels(path: Path) -> np.ndarray:
    import pydicom

    img = pydicom.dcmread(path).pixel_array.astype(np.float32)
    lo, hi = np.percentile(img, (1, 99.5))
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def render_contact_sheet(
    raw_dir: str | os.PathLike, study_id: int | None = None, out_png: str | os.PathLike = "contact_sheet.png"
) -> Path:
    """Draw the labelled instances of ``study_id`` (default: the first study with every
    series present and the most severe labels) and write ``out_png`` atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = Path(raw_dir)
    coords = _read_csv(raw / COORDINATES_CSV)
    series_desc = {
        (int(r["study_id"]), int(r["series_id"])): r["series_description"]
        for r in _read_csv(raw / SERIES_CSV)
    }
    labels = {int(r["study_id"]): r for r in _read_csv(raw / TRAIN_CSV)}
    if study_id is None:

        def score(sid: int) -> tuple:
            present = all(
                (raw / TRAIN_IMAGES / str(s) / str(ser)).is_dir() for (s, ser) in series_desc if s == sid
            )
            sev = sum(v in ("Moderate", "Severe") for v in labels[sid].values())
            return (present, sev, -sid)

        study_id = max(labels, key=score)
    study_id = int(study_id)
    if study_id not in labels:
        raise KeyError(f"study {study_id} is not in {raw / TRAIN_CSV}")
    rows = [r for r in coords if int(r["study_id"]) == study_id]

    def severity(cond: str, level: str) -> str:
        stem = cond.lower().replace(" ", "_")
        return labels[study_id].get(f"{stem}_{level.lower().replace('/', '_')}", "")

    # Panels: every (series, instance) that carries points, sagittal first, axial by level.
    panels: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        panels.setdefault((int(r["series_id"]), int(r["instance_number"])), []).append(r)

    def panel_key(k):
        desc = series_desc.get((study_id, k[0]), "")
        first_level = min(LEVELS.index(p["level"]) for p in panels[k])
        return ({"Sagittal T2/STIR": 0, "Sagittal T1": 1, "Axial T2": 2}.get(desc, 3), first_level, k[1])

    keys = sorted(panels, key=panel_key)[:12]
    if not keys:
        raise ValueError(f"study {study_id} has no label coordinates in {raw / COORDINATES_CSV}")
    n_cols = min(len(keys), 4)
    n_rows = int(np.ceil(len(keys) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 3.6 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, key in zip(axes.ravel(), keys):
        series_id, instance = key
        desc = series_desc.get((study_id, series_id), "?")
        path = raw / TRAIN_IMAGES / str(study_id) / str(series_id) / f"{instance}.dcm"
        try:
            ax.imshow(_pixels(path), cmap="gray", interpolation="bilinear")
        except Exception as exc:  # a planted fault (missing / broken file) is shown, not fatal
            ax.text(
                0.5,
                0.5,
                f"unreadable:\n{type(exc).__name__}",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_title(f"{desc} · inst {instance}", fontsize=8)
        for p in panels[key]:
            sev = severity(p["condition"], p["level"])
            x, y = float(p["x"]), float(p["y"])
            color = SEVERITY_COLORS.get(sev, "#9e9e9e")
            ax.plot(x, y, marker="+", markersize=9, mew=1.6, color=color)
            right = p["condition"].startswith("Right")  # patient right is image left on axials
            ax.annotate(
                f"{SHORT[p['condition']]} {p['level']} {sev or 'blank'}",
                (x, y),
                xytext=(-6, -3) if right else (6, -3),
                ha="right" if right else "left",
                textcoords="offset points",
                fontsize=5.5,
                color=color,
            )
    fig.suptitle(
        f"synthetic study {study_id}: labelled instances (green Normal/Mild, amber Moderate, red Severe)",
        fontsize=9,
    )
    fig.tight_layout()
    out = Path(out_png)
    with atomic.atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out
