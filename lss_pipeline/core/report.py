"""The evaluation report: thesis table, Kaggle metric, plots and champion models.

Reads every available ``models/{arch}/{category}/`` partition (``oof.parquet`` +
``summary.json``); a partition without both files is listed as missing, not an error.
Writes ``evaluation.md``, a self-contained ``evaluation.html`` (plots embedded as base64),
PNG plots and ``evaluation_metrics.csv`` / ``.parquet`` under ``out_dir``, every file
atomically. No MLflow or Dagster here: the caller passes MLflow runs and champions in.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import (
    ARCHITECTURES,
    CATEGORIES,
    CATEGORY_NAMES,
    CLASS_NAMES,
    CONDITIONS,
)
from lss_pipeline.core.markdown import markdown_rows
from lss_pipeline.core.metrics import (
    COMPETITION_TERMS,
    classification_metrics,
    competition_score,
    parse_row_id,
)

BASELINE_ARCH = "resnet"
OOF_FILE = "oof.parquet"
SUMMARY_FILE = "summary.json"
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{c}" for c in CLASS_NAMES)
OOF_REQUIRED: tuple[str, ...] = ("study_id", "row_id", "label", *PROB_COLUMNS)
MLFLOW_RUNS_REQUIRED: tuple[str, ...] = ("arch", "category", "loss", "run_id", "val_macro_recall")
CLASS_TITLES: tuple[str, ...] = ("Normal/Mild", "Moderate", "Severe")
ARCH_TITLES: dict[str, str] = {"convnext": "ConvNeXt", "resnet": "ResNet", "swin": "Swin"}
# One colour per architecture in every plot.
ARCH_COLORS: dict[str, str] = {"convnext": "C0", "resnet": "C1", "swin": "C2"}

# The thesis' published numbers (ConvNeXt, real RSNA data), percent and percentage points.
THESIS_CONVNEXT_MACRO_RECALL_PCT: dict[str, float] = {"scs": 76.17, "nfs": 69.31, "sbs": 72.65}
THESIS_GAIN_OVER_RESNET50_PTS: dict[str, float] = {"scs": 6.18, "nfs": 32.98, "sbs": 5.86}
THESIS_CONVNEXT_BEAT_SWIN: dict[str, bool] = {"scs": True, "nfs": True, "sbs": True}

DATASET_KINDS = ("synthetic", "rsna")

MISSING_ROWS_POLICY = (
    "Kaggle's metric needs a prediction for every labelled row. It is computed per "
    "architecture over the studies present in all three categories' out-of-fold tables; "
    "a labelled row of such a study that has no out-of-fold prediction (e.g. its crop was "
    "skipped) is predicted with the class prior of its category (the label shares of that "
    "category's out-of-fold rows), as a submission would have to. The number of filled "
    "rows is shown. Without a labels table, only rows present in the out-of-fold tables "
    "are known and scored."
)

_CATEGORY_OF_STEM: dict[str, str] = {stem: cat for (_, cat, _, stem) in CONDITIONS}

METRICS_SCHEMA: dict[str, Any] = {
    "arch": pl.Utf8,
    "category": pl.Utf8,
    "timm_name": pl.Utf8,
    "n_rows": pl.Int64,
    "n_studies": pl.Int64,
    "macro_recall": pl.Float64,
    "balanced_accuracy": pl.Float64,
    "severe_recall": pl.Float64,
    "weighted_log_loss": pl.Float64,
    **{f"{m}_{c}": pl.Float64 for m in ("recall", "precision", "f1") for c in CLASS_NAMES},
    **{f"cm_true{i}_pred{j}": pl.Int64 for i in range(3) for j in range(3)},
    "params": pl.Int64,
    "macs": pl.Int64,
    "gmacs": pl.Float64,
    "macro_recall_pct_per_gmac": pl.Float64,
    "delta_vs_resnet_pts": pl.Float64,
    "loss": pl.Utf8,
    "weight_scheme": pl.Utf8,
    "mlflow_run_id": pl.Utf8,
    "model_version": pl.Utf8,
    "registered_model": pl.Utf8,
    "val_macro_recall": pl.Float64,
}


@dataclass
class ReportResult:
    out_dir: Path
    markdown_path: Path
    html_path: Path
    csv_path: Path
    parquet_path: Path
    plot_paths: list[Path]
    # The main metrics table as Markdown, for the Dagster UI metadata.
    markdown_table: str
    # One row per available arch × category (METRICS_SCHEMA); fractions, not percent.
    metrics: pl.DataFrame
    # (arch, category) of partitions without oof.parquet + summary.json.
    missing: list[tuple[str, str]]
    # arch -> competition_score(...) result plus n_filled_rows and solution_source.
    competition: dict[str, dict[str, Any]]
    # category -> champion row (given champions, or choose_champions' candidates).
    champions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Best MLflow run per arch × category × loss; None when no runs were given.
    loss_table: pl.DataFrame | None = None


# --------------------------------------------------------------------------- loading


def load_partition(models_dir: str | Path, arch: str, category: str) -> tuple[pl.DataFrame, dict] | None:
    """(oof table, summary) of one trained partition, or None if either file is absent.

    A present but malformed file raises ValueError naming the file and the problem.
    """
    part_dir = Path(models_dir) / arch / category
    oof_path, summary_path = part_dir / OOF_FILE, part_dir / SUMMARY_FILE
    if not (oof_path.is_file() and summary_path.is_file()):
        return None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{summary_path}: not readable JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise ValueError(f"{summary_path}: expected a JSON object")
    for key, expected in (("arch", arch), ("category", category)):
        if key in summary and summary[key] != expected:
            raise ValueError(f"{summary_path}: {key}={summary[key]!r} but the folder says {expected!r}")
    try:
        oof = pl.read_parquet(oof_path)
    except Exception as exc:  # polars raises several types for a corrupt file
        raise ValueError(f"{oof_path}: not readable Parquet ({exc})") from exc
    missing = [c for c in OOF_REQUIRED if c not in oof.columns]
    if missing:
        raise ValueError(f"{oof_path}: missing column(s) {missing}")
    for col in ("study_id", "row_id", *PROB_COLUMNS):
        n_null = oof[col].null_count()
        if n_null:
            raise ValueError(f"{oof_path}: column {col!r} has {n_null} null value(s)")
    bad = oof.filter(pl.col("label").is_not_null() & ~pl.col("label").is_in([0, 1, 2]))
    if len(bad):
        raise ValueError(
            f"{oof_path}: column 'label' must be 0/1/2; row_id {bad['row_id'][0]!r} has {bad['label'][0]}"
        )
    if oof["label"].drop_nulls().is_empty():
        raise ValueError(f"{oof_path}: no labelled rows")
    return oof, summary


def _as_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def partition_metrics(oof: pl.DataFrame, summary: dict, arch: str, category: str) -> dict[str, Any]:
    """One metrics row (METRICS_SCHEMA keys) from a partition's oof table and summary."""
    labelled = oof.filter(pl.col("label").is_not_null())
    m = classification_metrics(
        labelled["label"].to_numpy().astype(np.int64), labelled.select(PROB_COLUMNS).to_numpy()
    )
    params, macs = _as_int(summary.get("params")), _as_int(summary.get("macs"))
    gmacs = macs / 1e9 if macs else None
    row: dict[str, Any] = {
        "arch": arch,
        "category": category,
        "timm_name": _as_str(summary.get("timm_name")),
        "n_rows": m["n"],
        "n_studies": labelled["study_id"].n_unique(),
        "macro_recall": m["macro_recall"],
        "balanced_accuracy": m["balanced_accuracy"],
        "severe_recall": m["severe_recall"],
        "weighted_log_loss": m["weighted_log_loss"],
        "params": params,
        "macs": macs,
        "gmacs": gmacs,
        "macro_recall_pct_per_gmac": 100.0 * m["macro_recall"] / gmacs if gmacs else None,
        "delta_vs_resnet_pts": None,
        "loss": _as_str(summary.get("loss")),
        "weight_scheme": _as_str(summary.get("weight_scheme")),
        "mlflow_run_id": _as_str(summary.get("mlflow_run_id")),
        "model_version": _as_str(summary.get("model_version")),
        "registered_model": _as_str(summary.get("registered_model")),
        # Top level per the summary.json contract; TrainResult.summary() nests it in best_metrics.
        "val_macro_recall": _as_float(
            summary.get("val_macro_recall", (summary.get("best_metrics") or {}).get("val_macro_recall"))
        ),
    }
    for metric in ("recall", "precision", "f1"):
        for c in CLASS_NAMES:
            row[f"{metric}_{c}"] = m[f"{metric}_{c}"]
    for i in range(3):
        for j in range(3):
            row[f"cm_true{i}_pred{j}"] = m["confusion_matrix"][i][j]
    return row


def _with_delta_vs_resnet(metrics: pl.DataFrame) -> pl.DataFrame:
    baseline = metrics.filter(pl.col("arch") == BASELINE_ARCH).select(
        "category", pl.col("macro_recall").alias("_baseline")
    )
    return (
        metrics.drop("delta_vs_resnet_pts")
        .join(baseline, on="category", how="left")
        .with_columns(((pl.col("macro_recall") - pl.col("_baseline")) * 100.0).alias("delta_vs_resnet_pts"))
        .drop("_baseline")
        .select(list(METRICS_SCHEMA))
    )


# --------------------------------------------------------------------------- champions


def choose_champions(metrics_df: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """category -> the metrics row with the best macro recall; ties go to fewer MACs.

    Rows without a macro recall are skipped; unknown MACs lose a tie; the arch name
    breaks any remaining tie so the choice is deterministic.
    """
    for col in ("category", "arch", "macro_recall"):
        if col not in metrics_df.columns:
            raise ValueError(f"metrics_df: missing column {col!r}")
    df = metrics_df.filter(pl.col("macro_recall").is_not_null() & pl.col("macro_recall").is_not_nan())
    if "macs" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Int64).alias("macs"))
    df = df.sort(
        ["category", "macro_recall", "macs", "arch"],
        descending=[False, True, False, False],
        nulls_last=True,
    )
    best = df.unique("category", keep="first", maintain_order=True)
    return {row["category"]: row for row in best.iter_rows(named=True)}


# --------------------------------------------------------------------------- Kaggle metric


def _dedupe_oof(oof: pl.DataFrame) -> pl.DataFrame:
    # Several crops of one row (should not happen) are averaged into one prediction.
    return oof.group_by("row_id", maintain_order=True).agg(
        pl.col("study_id").first(), pl.col("label").first(), *[pl.col(c).mean() for c in PROB_COLUMNS]
    )


def competition_for_arch(
    oofs: dict[str, pl.DataFrame], labels: pl.DataFrame | None = None
) -> dict[str, Any]:
    """Kaggle metric of one architecture from its three categories' oof tables.

    See MISSING_ROWS_POLICY. ``labels`` (optional) is ``labels.parquet`` (``study_id,
    row_id, label``); without it the solution is the labelled oof rows.
    """
    missing = [c for c in CATEGORIES if c not in oofs]
    if missing:
        raise ValueError(f"competition metric needs all three categories; missing {missing}")
    per_category = {c: _dedupe_oof(oofs[c]) for c in CATEGORIES}
    studies = set.intersection(*(set(df["study_id"].to_list()) for df in per_category.values()))
    if not studies:
        raise ValueError("no study is present in all three categories' out-of-fold tables")
    study_list = sorted(studies)
    predictions = pl.concat(
        [df.filter(pl.col("study_id").is_in(study_list)).select("row_id", "study_id", "label", *PROB_COLUMNS)
         for df in per_category.values()],
        how="vertical_relaxed",
    )
    if labels is not None:
        for col in ("study_id", "row_id", "label"):
            if col not in labels.columns:
                raise ValueError(f"labels: missing column {col!r}")
        solution = labels.filter(pl.col("study_id").is_in(study_list)).select(
            "row_id", pl.col("label").cast(pl.Int64)
        )
        source = "labels table"
    else:
        solution = predictions.select("row_id", pl.col("label").cast(pl.Int64))
        source = "out-of-fold rows"

    submission = predictions.select(
        "row_id", *[pl.col(p).alias(c) for p, c in zip(PROB_COLUMNS, CLASS_NAMES)]
    )
    unpredicted = solution.filter(pl.col("label").is_not_null()).join(submission, on="row_id", how="anti")
    n_filled = len(unpredicted)
    if n_filled:
        priors = {}
        for cat, df in per_category.items():
            counts = np.bincount(df["label"].drop_nulls().to_numpy().astype(np.int64), minlength=3)
            priors[cat] = counts / counts.sum()
        fill_rows = []
        for row_id in unpredicted["row_id"].to_list():
            prior = priors[_CATEGORY_OF_STEM[parse_row_id(row_id)[1]]]
            fill_rows.append((row_id, *(float(p) for p in prior)))
        fill_schema = {"row_id": pl.Utf8, **{c: pl.Float64 for c in CLASS_NAMES}}
        fill = pl.DataFrame(fill_rows, schema=fill_schema, orient="row")
        submission = pl.concat([submission, fill], how="vertical_relaxed")

    result = competition_score(solution, submission)
    result["n_filled_rows"] = n_filled
    result["solution_source"] = source
    return result


# --------------------------------------------------------------------------- plots


def _png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _confusion_png(row: dict[str, Any]) -> bytes:
    cm = np.array([[row[f"cm_true{i}_pred{j}"] for j in range(3)] for i in range(3)], dtype=float)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(3.8, 3.4))
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(3):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(3), CLASS_TITLES, fontsize=8)
    ax.set_yticks(range(3), CLASS_TITLES, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{ARCH_TITLES.get(row['arch'], row['arch'])} · {row['category'].upper()}", fontsize=10)
    return _png_bytes(fig)


def _recall_bars_png(rows: list[dict[str, Any]], category: str) -> bytes:
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(3)
    for k, row in enumerate(rows):
        recalls = [row[f"recall_{c}"] for c in CLASS_NAMES]
        recalls = [0.0 if r is None or math.isnan(r) else 100 * r for r in recalls]
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, recalls, width, color=ARCH_COLORS.get(row["arch"]),
               label=f"{ARCH_TITLES.get(row['arch'], row['arch'])} (macro {100 * row['macro_recall']:.1f} %)")
    ax.set_xticks(x, CLASS_TITLES)
    ax.set_ylim(0, 100)
    ax.set_ylabel("recall (%)")
    ax.set_title(f"Per-class recall · {category.upper()}", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return _png_bytes(fig)


def _recall_vs_gmacs_png(rows: list[dict[str, Any]], category: str) -> bytes:
    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.add_subplot()
    for row in rows:
        ax.scatter(row["gmacs"], 100 * row["macro_recall"], s=40, color=ARCH_COLORS.get(row["arch"]))
        ax.annotate(ARCH_TITLES.get(row["arch"], row["arch"]), (row["gmacs"], 100 * row["macro_recall"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    gmacs = [r["gmacs"] for r in rows]
    if max(gmacs) / min(gmacs) > 10:  # family sizes span orders of magnitude
        ax.set_xscale("log")
    ax.set_xlabel("GMACs per crop (fvcore)")
    ax.set_ylabel("macro recall (%)")
    ax.set_title(f"Macro recall vs GMACs · {category.upper()}", fontsize=10)
    ax.grid(alpha=0.3)
    return _png_bytes(fig)


# --------------------------------------------------------------------------- rendering


def _fmt_pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f} %"


def _fmt_pts(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:+.2f}"


def _fmt_num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _fmt_params(x: int | None) -> str:
    return "—" if x is None else f"{x / 1e6:.2f} M"


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


# Blocks: ("h", level, text) | ("p", text) | ("note", text) | ("list", [items])
#         | ("table", headers, rows) | ("img", file name, caption, png bytes)
Block = tuple


def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            parts.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            parts.append(b[1])
        elif kind == "note":
            parts.append("> " + b[1])
        elif kind == "list":
            parts.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "table":
            parts.append(markdown_rows(b[1], b[2]))
        elif kind == "img":
            parts.append(f"![{b[2]}]({b[1]})")
    return "\n\n".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
blockquote{border-left:4px solid #e0a000;background:#fff8e6;margin:1em 0;padding:0.5em 1em}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}
figure{display:inline-block;margin:0.5em;vertical-align:top;text-align:center}
figure img{max-width:520px;border:1px solid #ddd}
figcaption{font-size:0.85em;color:#555}
"""


def render_html(blocks: list[Block], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            parts.append(f"<h{b[1]}>{_inline_html(b[2])}</h{b[1]}>")
        elif kind == "p":
            parts.append(f"<p>{_inline_html(b[1])}</p>")
        elif kind == "note":
            parts.append(f"<blockquote>{_inline_html(b[1])}</blockquote>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{_inline_html(str(v))}</td>" for v in r) + "</tr>" for r in b[2]
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(b[3]).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}">'
                f"<figcaption>{html.escape(b[2])}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- sections


def _main_table(metrics: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["Architecture", "Category", "Macro recall", "Δ vs ResNet (pts)", "Severe recall",
               "Balanced acc.", "Weighted log loss", "Params", "GMACs", "Recall % / GMAC", "Rows"]
    rows = [
        [ARCH_TITLES.get(r["arch"], r["arch"]), r["category"].upper(), _fmt_pct(r["macro_recall"]),
         _fmt_pts(r["delta_vs_resnet_pts"]), _fmt_pct(r["severe_recall"]), _fmt_pct(r["balanced_accuracy"]),
         _fmt_num(r["weighted_log_loss"]), _fmt_params(r["params"]), _fmt_num(r["gmacs"]),
         _fmt_num(r["macro_recall_pct_per_gmac"], 1), str(r["n_rows"])]
        for r in metrics.iter_rows(named=True)
    ]
    return headers, rows


def _per_class_table(metrics: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["Architecture", "Category"] + [
        f"{m} {t}" for t in CLASS_TITLES for m in ("Recall", "Precision", "F1")
    ]
    rows = []
    for r in metrics.iter_rows(named=True):
        cells = [ARCH_TITLES.get(r["arch"], r["arch"]), r["category"].upper()]
        for c in CLASS_NAMES:
            cells += [_fmt_pct(r[f"{m}_{c}"], 1) for m in ("recall", "precision", "f1")]
        rows.append(cells)
    return headers, rows


def _thesis_blocks(metrics: pl.DataFrame, categories: Sequence[str]) -> list[Block]:
    by_key = {(r["arch"], r["category"]): r for r in metrics.iter_rows(named=True)}
    headers = ["Category", "Thesis: ConvNeXt macro recall", "Thesis: gain over ResNet-50 (pts)",
               "Thesis: ConvNeXt beat Swin", "This run: ConvNeXt macro recall",
               "This run: ConvNeXt Δ vs ResNet (pts)", "This run: ConvNeXt − Swin (pts)"]
    rows = []
    for cat in categories:
        conv, swin = by_key.get(("convnext", cat)), by_key.get(("swin", cat))
        vs_swin = 100 * (conv["macro_recall"] - swin["macro_recall"]) if conv and swin else None
        rows.append([
            f"{cat.upper()} ({CATEGORY_NAMES[cat]})",
            f"{THESIS_CONVNEXT_MACRO_RECALL_PCT[cat]:.2f} %",
            f"{THESIS_GAIN_OVER_RESNET50_PTS[cat]:+.2f}",
            "yes" if THESIS_CONVNEXT_BEAT_SWIN[cat] else "no",
            _fmt_pct(conv["macro_recall"]) if conv else "not trained",
            _fmt_pts(conv["delta_vs_resnet_pts"]) if conv else "—",
            _fmt_pts(vs_swin),
        ])
    return [
        ("h", 2, "Thesis (published, real RSNA data) vs this run"),
        ("note", "The **Thesis** columns are the thesis' published numbers on the real RSNA 2024 "
                 "dataset (ConvNeXt, full-size models), copied here for reference; they were not "
                 "computed by this pipeline. The **This run** columns come from the dataset named "
                 "at the top of this report."),
        ("table", headers, rows),
    ]


def _competition_blocks(competition: dict[str, dict[str, Any]], skipped: dict[str, list[str]]) -> list[Block]:
    blocks: list[Block] = [
        ("h", 2, "Kaggle competition metric (weighted log loss, lower is better)"),
        ("p", "Row weights 1, 2, 4 for a true Normal/Mild, Moderate, Severe label; blank labels dropped; "
              "spinal (5 rows per study), foraminal (10) and subarticular (10) weighted log loss, "
              "plus `any_severe_spinal` per study; the score is the mean of the four."),
        ("p", MISSING_ROWS_POLICY),
    ]
    if competition:
        headers = ["Architecture", "Spinal", "Foraminal", "Subarticular", "any_severe_spinal", "Score",
                   "Studies", "Rows scored", "Rows filled with prior", "Solution from"]
        rows = [
            [ARCH_TITLES.get(a, a), *(_fmt_num(c[t], 4) for t in COMPETITION_TERMS), _fmt_num(c["score"], 4),
             str(c["n_studies"]), str(c["n_rows"]), str(c["n_filled_rows"]), c["solution_source"]]
            for a, c in competition.items()
        ]
        blocks.append(("table", headers, rows))
    else:
        blocks.append(("p", "No architecture has all three categories trained yet."))
    if skipped:
        blocks.append(("list", [
            f"{ARCH_TITLES.get(a, a)}: not computed, missing {', '.join(c.upper() for c in cats)}"
            for a, cats in skipped.items()
        ]))
    return blocks


def _champion_blocks(
    champions: dict[str, dict[str, Any]] | None, metrics: pl.DataFrame
) -> tuple[list[Block], dict]:
    blocks: list[Block] = [("h", 2, "Champion models")]
    if champions is not None:
        chosen = champions
        blocks.append(("p", "The registered model alias `champion` of `lss-<category>` was set to the "
                            "version below: the best macro recall, ties broken by fewer MACs."))
    else:
        chosen = choose_champions(metrics) if len(metrics) else {}
        blocks.append(("p", "Candidates by best macro recall (ties broken by fewer MACs); "
                            "no registered model alias was set by this report."))
    if chosen:
        rows = []
        for cat in sorted(chosen, key=lambda c: CATEGORIES.index(c) if c in CATEGORIES else 99):
            ch = chosen[cat]
            macs = _as_int(ch.get("macs"))
            version = ch.get("version", ch.get("model_version"))
            rows.append([cat.upper(), f"`lss-{cat}`", ARCH_TITLES.get(ch.get("arch"), str(ch.get("arch"))),
                         "—" if version is None else str(version),
                         _fmt_pct(_as_float(ch.get("macro_recall"))),
                         _fmt_num(macs / 1e9 if macs else None)])
        headers = ["Category", "Registered model", "Architecture", "Version", "Macro recall", "GMACs"]
        blocks.append(("table", headers, rows))
    else:
        blocks.append(("p", "No trained model yet."))
    return blocks, chosen


def best_runs_by_loss(mlflow_runs: pl.DataFrame) -> pl.DataFrame:
    """Best run (highest ``val_macro_recall``) per arch × category × loss, with the run count."""
    missing = [c for c in MLFLOW_RUNS_REQUIRED if c not in mlflow_runs.columns]
    if missing:
        raise ValueError(f"mlflow_runs: missing column(s) {missing}; has {mlflow_runs.columns}")
    keys = ["arch", "category", "loss"]
    runs = mlflow_runs.with_columns(pl.col("val_macro_recall").cast(pl.Float64)).filter(
        pl.col("val_macro_recall").is_not_null() & pl.col("val_macro_recall").is_not_nan()
    )
    counts = runs.group_by(keys).agg(pl.len().alias("n_runs"))
    best = (
        runs.sort(["val_macro_recall", "run_id"], descending=[True, False])
        .unique(keys, keep="first", maintain_order=True)
        .select(*keys, "run_id", "val_macro_recall")
        .join(counts, on=keys, how="left")
    )
    cat_order = {c: i for i, c in enumerate(CATEGORIES)}
    arch_order = {a: i for i, a in enumerate(ARCHITECTURES)}
    return best.with_columns(
        pl.col("category").replace_strict(cat_order, default=99, return_dtype=pl.Int64).alias("_c"),
        pl.col("arch").replace_strict(arch_order, default=99, return_dtype=pl.Int64).alias("_a"),
    ).sort(["_c", "_a", "arch", "loss"]).drop("_c", "_a")


def _loss_blocks(mlflow_runs: pl.DataFrame | None) -> tuple[list[Block], pl.DataFrame | None]:
    blocks: list[Block] = [
        ("h", 2, "Loss comparison (MLflow): best run per architecture × category × loss")
    ]
    if mlflow_runs is None:
        blocks.append(("p", "No MLflow runs were given."))
        return blocks, None
    table = best_runs_by_loss(mlflow_runs)
    if table.is_empty():
        blocks.append(("p", "No finished MLflow run with a validation macro recall yet."))
        return blocks, table
    rows = [[ARCH_TITLES.get(r["arch"], r["arch"]), r["category"].upper(), str(r["loss"]),
             _fmt_pct(r["val_macro_recall"]), str(r["n_runs"]), f"`{r['run_id']}`"]
            for r in table.iter_rows(named=True)]
    headers = ["Architecture", "Category", "Loss", "Best val. macro recall", "Runs", "Run id"]
    blocks.append(("table", headers, rows))
    return blocks, table


def _dataset_line(dataset_info: dict) -> tuple[str, str | None]:
    kind = dataset_info.get("kind")
    if kind not in DATASET_KINDS:
        raise ValueError(f"dataset_info['kind'] must be one of {DATASET_KINDS}, got {kind!r}")
    name = "synthetic phantom data" if kind == "synthetic" else "RSNA 2024 Lumbar Spine (real)"
    fingerprint = dataset_info.get("fingerprint", "unknown")
    line = (f"**Dataset:** {name} — kind `{kind}`, fingerprint `{fingerprint}`, "
            f"{dataset_info.get('n_studies', 'unknown')} studies.")
    note = ("These numbers were computed on synthetic data and are not comparable to the thesis' "
            "numbers on the real dataset." if kind == "synthetic" else None)
    return line, note


# --------------------------------------------------------------------------- entry point


def build_report(
    models_dir: str | Path,
    out_dir: str | Path,
    *,
    dataset_info: dict,
    mlflow_runs: pl.DataFrame | None = None,
    champions: dict[str, dict[str, Any]] | None = None,
    archs: Sequence[str] = ARCHITECTURES,
    categories: Sequence[str] = CATEGORIES,
    labels: pl.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Build the evaluation report from every available trained partition.

    ``champions``: category -> {arch, version, macro_recall (fraction), macs}, the models
    the caller set as ``champion``; None lists choose_champions' candidates instead.
    ``labels``: optional ``labels.parquet`` table for a complete Kaggle solution.
    """
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir)
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; expected some of {CATEGORIES}")
    dataset_line, dataset_note = _dataset_line(dataset_info)

    rows: list[dict[str, Any]] = []
    oofs: dict[str, dict[str, pl.DataFrame]] = {}
    missing: list[tuple[str, str]] = []
    for arch in archs:
        for cat in categories:
            loaded = load_partition(models_dir, arch, cat)
            if loaded is None:
                missing.append((arch, cat))
                say(f"{arch}/{cat}: missing")
                continue
            oof, summary = loaded
            rows.append(partition_metrics(oof, summary, arch, cat))
            oofs.setdefault(arch, {})[cat] = oof
            say(f"{arch}/{cat}: macro recall {rows[-1]['macro_recall']:.4f}")
    metrics = _with_delta_vs_resnet(pl.DataFrame(rows, schema=METRICS_SCHEMA))

    competition: dict[str, dict[str, Any]] = {}
    skipped: dict[str, list[str]] = {}
    for arch in archs:
        have = oofs.get(arch, {})
        lacking = [c for c in CATEGORIES if c not in have]
        if lacking:
            skipped[arch] = lacking
            continue
        competition[arch] = competition_for_arch(have, labels)
        say(f"{arch}: Kaggle score {competition[arch]['score']:.4f}")

    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [("h", 1, "LSS grading — evaluation report"), ("p", dataset_line)]
    if dataset_note:
        blocks.append(("note", dataset_note))
    blocks.append(("p", f"Generated {generated} from `{Path(models_dir)}`; out-of-fold predictions "
                        f"(every study scored by the model of the fold that did not train on it)."))
    blocks.append(("h", 2, "Trained partitions"))
    available = [f"{ARCH_TITLES.get(r['arch'], r['arch'])} × {r['category'].upper()}" for r in rows]
    blocks.append(("list", [f"available: {', '.join(available) or 'none'}",
                            "missing: " + (", ".join(f"{ARCH_TITLES.get(a, a)} × {c.upper()}"
                                                     for a, c in missing) or "none")]))
    blocks.append(("h", 2, "Metrics per architecture × category"))
    blocks.append(("p", "Macro recall = mean of per-class recall over the classes present (the thesis' "
                        "\"recall\"); Δ vs ResNet = difference in macro recall, percentage points; "
                        "GMACs = multiply-adds per crop (fvcore) / 10⁹; recall % / GMAC = macro recall "
                        "in percent per GMAC; weighted log loss uses weights 1/2/4."))
    if len(metrics):
        headers, main_rows = _main_table(metrics)
        main_table = markdown_rows(headers, main_rows)
        blocks.append(("table", headers, main_rows))
        headers, per_class_rows = _per_class_table(metrics)
        blocks += [("h", 3, "Per-class recall, precision, F1"), ("table", headers, per_class_rows)]
    else:
        main_table = "No trained partition found."
        blocks.append(("p", main_table))
    blocks += _thesis_blocks(metrics, categories)
    blocks += _competition_blocks(competition, skipped)
    champion_blocks, chosen = _champion_blocks(champions, metrics)
    blocks += champion_blocks
    loss_blocks, loss_table = _loss_blocks(mlflow_runs)
    blocks += loss_blocks

    # Plots: made in memory, written atomically, embedded in the HTML.
    plots: list[tuple[str, str, bytes]] = []
    for r in metrics.iter_rows(named=True):
        plots.append((f"confusion_{r['arch']}_{r['category']}.png",
                      f"Confusion matrix, {ARCH_TITLES.get(r['arch'], r['arch'])} {r['category'].upper()}",
                      _confusion_png(r)))
    for cat in categories:
        cat_rows = [r for r in metrics.iter_rows(named=True) if r["category"] == cat]
        if not cat_rows:
            continue
        plots.append((f"recall_per_class_{cat}.png", f"Per-class recall, {cat.upper()}",
                      _recall_bars_png(cat_rows, cat)))
        with_macs = [r for r in cat_rows if r["gmacs"]]
        if with_macs:
            plots.append((f"recall_vs_gmacs_{cat}.png", f"Macro recall vs GMACs, {cat.upper()}",
                          _recall_vs_gmacs_png(with_macs, cat)))
    if plots:
        blocks.append(("h", 2, "Plots"))
        blocks += [("img", name, caption, png) for name, caption, png in plots]

    markdown = render_markdown(blocks)
    page = render_html(blocks, "LSS evaluation report")

    plot_paths = [atomic.write_bytes(png, out_dir / name) for name, _, png in plots]
    csv_path, parquet_path = out_dir / "evaluation_metrics.csv", out_dir / "evaluation_metrics.parquet"
    with atomic.atomic_path(csv_path) as tmp:
        metrics.write_csv(tmp)
    atomic.write_parquet(metrics, parquet_path)
    html_path = atomic.write_text(page, out_dir / "evaluation.html")
    # The Markdown last: its presence means the whole report was written.
    markdown_path = atomic.write_text(markdown, out_dir / "evaluation.md")
    say(f"report written to {out_dir}")

    return ReportResult(
        out_dir=out_dir, markdown_path=markdown_path, html_path=html_path, csv_path=csv_path,
        parquet_path=parquet_path, plot_paths=plot_paths, markdown_table=main_table, metrics=metrics,
        missing=missing, competition=competition, champions=chosen, loss_table=loss_table,
    )
