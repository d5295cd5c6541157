"""The report's plots, drawn with matplotlib's object API (no global pyplot state) into PNG bytes."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lss_pipeline.core.constants import CLASS_NAMES

CLASS_TITLES: tuple[str, ...] = ("Normal/Mild", "Moderate", "Severe")
ARCH_TITLES: dict[str, str] = {"convnext": "ConvNeXt", "resnet": "ResNet", "swin": "Swin"}
# One colour per architecture in every plot.
ARCH_COLORS: dict[str, str] = {"convnext": "C0", "resnet": "C1", "swin": "C2"}


def arch_title(arch: str) -> str:
    return ARCH_TITLES.get(arch, arch)


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def confusion_png(row: dict[str, Any]) -> bytes:
    """Counts and row shares of a metrics row's ``cm_true{i}_pred{j}`` confusion matrix."""
    cm = np.array([[row[f"cm_true{i}_pred{j}"] for j in range(3)] for i in range(3)], dtype=float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(3.8, 3.4))
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(3):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xticks(range(3), CLASS_TITLES, fontsize=8)
    ax.set_yticks(range(3), CLASS_TITLES, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{arch_title(row['arch'])} · {row['category'].upper()}", fontsize=10)
    return png_bytes(fig)


def recall_bars_png(rows: list[dict[str, Any]], category: str) -> bytes:
    """Per-class recall of every architecture of one category, side by side."""
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(3)
    for k, row in enumerate(rows):
        recalls = [row[f"recall_{c}"] for c in CLASS_NAMES]
        heights = [0.0 if r is None or math.isnan(r) else 100 * r for r in recalls]
        ax.bar(
            x + (k - (len(rows) - 1) / 2) * width,
            heights,
            width,
            color=ARCH_COLORS.get(row["arch"]),
            label=f"{arch_title(row['arch'])} (macro {100 * row['macro_recall']:.1f} %)",
        )
    ax.set_xticks(x, CLASS_TITLES)
    ax.set_ylim(0, 100)
    ax.set_ylabel("recall (%)")
    ax.set_title(f"Per-class recall · {category.upper()}", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return png_bytes(fig)


def recall_vs_gmacs_png(rows: list[dict[str, Any]], category: str) -> bytes:
    """Macro recall against fvcore GMACs per crop, one point per architecture."""
    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.add_subplot()
    for row in rows:
        ax.scatter(row["gmacs"], 100 * row["macro_recall"], s=40, color=ARCH_COLORS.get(row["arch"]))
        ax.annotate(
            arch_title(row["arch"]),
            (row["gmacs"], 100 * row["macro_recall"]),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    gmacs = [r["gmacs"] for r in rows]
    if max(gmacs) / min(gmacs) > 10:  # family sizes span orders of magnitude
        ax.set_xscale("log")
    ax.set_xlabel("GMACs per crop (fvcore)")
    ax.set_ylabel("macro recall (%)")
    ax.set_title(f"Macro recall vs GMACs · {category.upper()}", fontsize=10)
    ax.grid(alpha=0.3)
    return png_bytes(fig)
