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
    """Counts and row shares of a metrics row's test confusion matrix (``test_cm_true{i}_pred{j}``)."""
    cm = np.array([[row[f"test_cm_true{i}_pred{j}"] for j in range(3)] for i in range(3)], dtype=float)
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
    ax.set_title(f"{arch_title(row['arch'])} · {row['category'].upper()} · test split", fontsize=10)
    return png_bytes(fig)


def _pct(value: float | None) -> float:
    return float("nan") if value is None or math.isnan(value) else 100 * value


def recall_bars_png(rows: list[dict[str, Any]], category: str) -> bytes:
    """Per-class test recall of every architecture of one category, side by side, with 95 % intervals."""
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(3)
    for k, row in enumerate(rows):
        heights = np.array([_pct(row[f"test_recall_{c}"]) for c in CLASS_NAMES])
        lo = np.array([_pct(row[f"test_recall_{c}_lo"]) for c in CLASS_NAMES])
        hi = np.array([_pct(row[f"test_recall_{c}_hi"]) for c in CLASS_NAMES])
        errors = np.maximum(np.nan_to_num(np.vstack([heights - lo, hi - heights])), 0.0)
        ax.bar(
            x + (k - (len(rows) - 1) / 2) * width,
            np.nan_to_num(heights),
            width,
            yerr=errors,
            capsize=2,
            color=ARCH_COLORS.get(row["arch"]),
            label=f"{arch_title(row['arch'])} (macro {_pct(row['test_macro_recall']):.1f} %)",
        )
    ax.set_xticks(x, CLASS_TITLES)
    ax.set_ylim(0, 105)
    ax.set_ylabel("recall (%), test split")
    ax.set_title(f"Per-class recall · {category.upper()} (bars: 95 % interval)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return png_bytes(fig)


def recall_vs_gmacs_png(rows: list[dict[str, Any]], category: str) -> bytes:
    """Test macro recall (95 % interval) against fvcore GMACs per crop, one point per architecture."""
    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.add_subplot()
    for row in rows:
        y = _pct(row["test_macro_recall"])
        below = max(y - _pct(row["test_macro_recall_lo"]), 0.0)
        above = max(_pct(row["test_macro_recall_hi"]) - y, 0.0)
        ax.errorbar(
            row["gmacs"],
            y,
            yerr=np.nan_to_num([[below], [above]]),
            fmt="o",
            capsize=3,
            color=ARCH_COLORS.get(row["arch"]),
        )
        ax.annotate(
            arch_title(row["arch"]), (row["gmacs"], y), textcoords="offset points", xytext=(5, 4), fontsize=8
        )
    gmacs = [r["gmacs"] for r in rows]
    if max(gmacs) / min(gmacs) > 10:  # family sizes span orders of magnitude
        ax.set_xscale("log")
    ax.set_xlabel("GMACs per crop (fvcore)")
    ax.set_ylabel("macro recall (%), test split")
    ax.set_title(f"Macro recall vs GMACs · {category.upper()}", fontsize=10)
    ax.grid(alpha=0.3)
    return png_bytes(fig)


Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # mean confidence, accuracy, rows per bin


def reliability_png(category: str, curves: list[tuple[str, Curve, Curve]]) -> bytes:
    """Test-split reliability diagrams before and after temperature scaling, one line per architecture."""
    fig = Figure(figsize=(7.6, 3.4))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, title, after in ((axes[0], "before", False), (axes[1], "after temperature scaling", True)):
        ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
        for arch, before_curve, after_curve in curves:
            confidence, accuracy, rows = after_curve if after else before_curve
            ax.plot(confidence, accuracy, marker="o", color=ARCH_COLORS.get(arch), label=arch_title(arch))
            ax.scatter(
                confidence, accuracy, s=4 + 60 * rows / max(rows.max(), 1), color=ARCH_COLORS.get(arch)
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_title(f"{category.upper()} · test split · {title}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="upper left")
    return png_bytes(fig)
