"""The report's sections as blocks (``render.Block``), each from tables computed elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from lss_pipeline.core.constants import CATEGORIES, CATEGORY_NAMES, CLASS_NAMES
from lss_pipeline.core.evaluate.kaggle import MISSING_ROWS_POLICY
from lss_pipeline.core.evaluate.metrics import COMPETITION_TERMS
from lss_pipeline.core.evaluate.plots import CLASS_TITLES, arch_title
from lss_pipeline.core.evaluate.render import Block, fmt_num, fmt_params, fmt_pct, fmt_pts
from lss_pipeline.core.evaluate.runs import best_runs_by_loss
from lss_pipeline.core.evaluate.table import as_float, as_int

# The thesis' published numbers (ConvNeXt, real RSNA data), percent and percentage points.
THESIS_CONVNEXT_MACRO_RECALL_PCT: dict[str, float] = {"scs": 76.17, "nfs": 69.31, "sbs": 72.65}
THESIS_GAIN_OVER_RESNET50_PTS: dict[str, float] = {"scs": 6.18, "nfs": 32.98, "sbs": 5.86}
THESIS_CONVNEXT_BEAT_SWIN: dict[str, bool] = {"scs": True, "nfs": True, "sbs": True}

DATASET_KINDS = ("synthetic", "rsna")


def dataset_blocks(dataset: dict[str, Any]) -> list[Block]:
    kind = dataset.get("kind")
    if kind not in DATASET_KINDS:
        raise ValueError(f"dataset['kind'] must be one of {DATASET_KINDS}, got {kind!r}")
    name = "synthetic phantom data" if kind == "synthetic" else "RSNA 2024 Lumbar Spine (real)"
    line = (
        f"**Dataset:** {name} — kind `{kind}`, fingerprint `{dataset.get('fingerprint', 'unknown')}`, "
        f"{dataset.get('n_studies', 'unknown')} studies."
    )
    blocks: list[Block] = [("p", line)]
    if kind == "synthetic":
        blocks.append(
            (
                "note",
                "These numbers were computed on synthetic data and are not comparable to the "
                "thesis' numbers on the real dataset.",
            )
        )
    return blocks


def partitions_blocks(metrics: pl.DataFrame, missing: Sequence[tuple[str, str]]) -> list[Block]:
    available = [f"{arch_title(r['arch'])} × {r['category'].upper()}" for r in metrics.iter_rows(named=True)]
    absent = ", ".join(f"{arch_title(a)} × {c.upper()}" for a, c in missing)
    return [
        ("h", 2, "Trained partitions"),
        ("list", [f"available: {', '.join(available) or 'none'}", f"missing: {absent or 'none'}"]),
    ]


def main_table(metrics: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = [
        "Architecture",
        "Category",
        "Macro recall",
        "Δ vs ResNet (pts)",
        "Severe recall",
        "Balanced acc.",
        "Weighted log loss",
        "Params",
        "GMACs",
        "Recall % / GMAC",
        "Rows",
    ]
    rows = [
        [
            arch_title(r["arch"]),
            r["category"].upper(),
            fmt_pct(r["macro_recall"]),
            fmt_pts(r["delta_vs_resnet_pts"]),
            fmt_pct(r["severe_recall"]),
            fmt_pct(r["balanced_accuracy"]),
            fmt_num(r["weighted_log_loss"]),
            fmt_params(r["params"]),
            fmt_num(r["gmacs"]),
            fmt_num(r["macro_recall_pct_per_gmac"], 1),
            str(r["n_rows"]),
        ]
        for r in metrics.iter_rows(named=True)
    ]
    return headers, rows


def per_class_table(metrics: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["Architecture", "Category"] + [
        f"{m} {t}" for t in CLASS_TITLES for m in ("Recall", "Precision", "F1")
    ]
    rows = []
    for r in metrics.iter_rows(named=True):
        cells = [arch_title(r["arch"]), r["category"].upper()]
        for c in CLASS_NAMES:
            cells += [fmt_pct(r[f"{m}_{c}"], 1) for m in ("recall", "precision", "f1")]
        rows.append(cells)
    return headers, rows


def thesis_blocks(metrics: pl.DataFrame, categories: Sequence[str]) -> list[Block]:
    by_key = {(r["arch"], r["category"]): r for r in metrics.iter_rows(named=True)}
    headers = [
        "Category",
        "Thesis: ConvNeXt macro recall",
        "Thesis: gain over ResNet-50 (pts)",
        "Thesis: ConvNeXt beat Swin",
        "This run: ConvNeXt macro recall",
        "This run: ConvNeXt Δ vs ResNet (pts)",
        "This run: ConvNeXt − Swin (pts)",
    ]
    rows = []
    for cat in categories:
        conv, swin = by_key.get(("convnext", cat)), by_key.get(("swin", cat))
        vs_swin = 100 * (conv["macro_recall"] - swin["macro_recall"]) if conv and swin else None
        rows.append(
            [
                f"{cat.upper()} ({CATEGORY_NAMES[cat]})",
                f"{THESIS_CONVNEXT_MACRO_RECALL_PCT[cat]:.2f} %",
                f"{THESIS_GAIN_OVER_RESNET50_PTS[cat]:+.2f}",
                "yes" if THESIS_CONVNEXT_BEAT_SWIN[cat] else "no",
                fmt_pct(conv["macro_recall"]) if conv else "not trained",
                fmt_pts(conv["delta_vs_resnet_pts"]) if conv else "—",
                fmt_pts(vs_swin),
            ]
        )
    return [
        ("h", 2, "Thesis (published, real RSNA data) vs this run"),
        (
            "note",
            "The **Thesis** columns are the thesis' published numbers on the real RSNA 2024 "
            "dataset (ConvNeXt, full-size models), copied here for reference; they were not "
            "computed by this pipeline. The **This run** columns come from the dataset named "
            "at the top of this report.",
        ),
        ("table", headers, rows),
    ]


def competition_blocks(competition: dict[str, dict[str, Any]], skipped: dict[str, list[str]]) -> list[Block]:
    blocks: list[Block] = [
        ("h", 2, "Kaggle competition metric (weighted log loss, lower is better)"),
        (
            "p",
            "Row weights 1, 2, 4 for a true Normal/Mild, Moderate, Severe label; blank labels dropped; "
            "spinal (5 rows per study), foraminal (10) and subarticular (10) weighted log loss, "
            "plus `any_severe_spinal` per study; the score is the mean of the four.",
        ),
        ("p", MISSING_ROWS_POLICY),
    ]
    if competition:
        headers = [
            "Architecture",
            "Spinal",
            "Foraminal",
            "Subarticular",
            "any_severe_spinal",
            "Score",
            "Studies",
            "Rows scored",
            "Rows filled with prior",
            "Solution from",
        ]
        rows = [
            [
                arch_title(a),
                *(fmt_num(c[t], 4) for t in COMPETITION_TERMS),
                fmt_num(c["score"], 4),
                str(c["n_studies"]),
                str(c["n_rows"]),
                str(c["n_filled_rows"]),
                c["solution_source"],
            ]
            for a, c in competition.items()
        ]
        blocks.append(("table", headers, rows))
    else:
        blocks.append(("p", "No architecture has all three categories trained yet."))
    if skipped:
        blocks.append(
            (
                "list",
                [
                    f"{arch_title(a)}: not computed, missing {', '.join(c.upper() for c in cats)}"
                    for a, cats in skipped.items()
                ],
            )
        )
    return blocks


def champion_blocks(champions: dict[str, dict[str, Any]], aliases_set: bool) -> list[Block]:
    blocks: list[Block] = [("h", 2, "Champion models")]
    if aliases_set:
        blocks.append(
            (
                "p",
                "The registered model alias `champion` of `lss-<category>` was set to the "
                "version below: the best macro recall, ties broken by fewer MACs.",
            )
        )
    else:
        blocks.append(
            (
                "p",
                "Candidates by best macro recall (ties broken by fewer MACs); "
                "no registered model alias was set by this report.",
            )
        )
    if not champions:
        blocks.append(("p", "No trained model yet."))
        return blocks
    rows = []
    for cat in sorted(champions, key=lambda c: CATEGORIES.index(c) if c in CATEGORIES else 99):
        ch = champions[cat]
        macs = as_int(ch.get("macs"))
        version = ch.get("version", ch.get("model_version"))
        rows.append(
            [
                cat.upper(),
                f"`lss-{cat}`",
                arch_title(str(ch.get("arch"))),
                "—" if version is None else str(version),
                fmt_pct(as_float(ch.get("macro_recall"))),
                fmt_num(macs / 1e9 if macs else None),
            ]
        )
    headers = ["Category", "Registered model", "Architecture", "Version", "Macro recall", "GMACs"]
    blocks.append(("table", headers, rows))
    return blocks


def loss_blocks(mlflow_runs: pl.DataFrame | None) -> tuple[list[Block], pl.DataFrame | None]:
    blocks: list[Block] = [("h", 2, "Loss comparison (MLflow): best run per architecture × category × loss")]
    if mlflow_runs is None:
        blocks.append(("p", "No MLflow runs were given."))
        return blocks, None
    table = best_runs_by_loss(mlflow_runs)
    if table.is_empty():
        blocks.append(("p", "No finished MLflow run with a validation macro recall yet."))
        return blocks, table
    rows = [
        [
            arch_title(r["arch"]),
            r["category"].upper(),
            str(r["loss"]),
            fmt_pct(r["val_macro_recall"]),
            str(r["n_runs"]),
            f"`{r['run_id']}`",
        ]
        for r in table.iter_rows(named=True)
    ]
    headers = ["Architecture", "Category", "Loss", "Best val. macro recall", "Runs", "Run id"]
    blocks.append(("table", headers, rows))
    return blocks, table
