"""The report's framing sections as blocks (``render.Block``): dataset, method, partitions, cross-validation,
loss runs. The numbers' sections are in ``headline.py``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from lss_pipeline.core.constants import CLASS_NAMES
from lss_pipeline.core.evaluate.bootstrap import CONFIDENCE
from lss_pipeline.core.evaluate.load import Grid
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.plots import CLASS_TITLES, arch_title
from lss_pipeline.core.evaluate.promote import ChampionOutcome
from lss_pipeline.core.evaluate.render import (
    Block,
    fmt_counts,
    fmt_num,
    fmt_params,
    fmt_pct,
    fmt_pct_ci,
    fmt_pts_ci,
)
from lss_pipeline.core.evaluate.runs import best_runs_by_loss

DATASET_KINDS = ("synthetic", "rsna")
GMACS_NOTE = (
    'GMACs = multiply-accumulates per crop / 10⁹, counted by fvcore (whose "flops" count one per '
    "multiply-add, i.e. MACs; twice this is the FLOPs some papers quote), for one fold model; the "
    "registered fold ensemble costs that times the folds."
)


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


def _split_facts(grid: Grid) -> str:
    splits = grid.splits
    if splits is None or not {"split", "fold"} <= set(splits.columns):
        return "The data splits table was not found; the split sizes below come from the prediction tables."
    test = splits.filter(pl.col("split") == "test").height
    cv = splits.filter(pl.col("split") == "cv")
    k = cv["fold"].n_unique()
    share = test / splits.height if splits.height else 0.0
    return (
        f"Of {splits.height} studies, {test} ({100 * share:.0f} %) form the held-out **test split** and "
        f"{cv.height} the cross-validation split in {k} folds (assignment from a hash of the study id, "
        "so adding studies moves none)."
    )


def _folds(r: dict[str, Any]) -> str:
    """``4 of 5 (folds 0,1,2,3)``: how many of the K cv folds the partition trained."""
    trained = [f for f in (r["folds_trained"] or "").split(",") if f]
    if not trained:
        return "—"
    return f"{len(trained)} of {r['n_folds'] or '?'} (folds {','.join(trained)})"


def method_blocks(grid: Grid, options: EvaluationOptions) -> list[Block]:
    """How the numbers were made, stated once: splits, folds, test predictions, intervals."""
    summaries = [p.summary for p in grid.partitions.values()]
    how_test = sorted({str(s.get("test_predictions", "mean of the fold models' softmax")) for s in summaries})
    items = [
        _split_facts(grid),
        "The test split is never trained on, and no epoch, calibration or challenger is chosen on it; "
        "it only scores. The **headline numbers below come from the test split**.",
        "Each partition trains one model per cross-validation fold (on the other folds' studies, best "
        "epoch chosen on its own fold); its test predictions are the "
        + ("; ".join(how_test) or "mean of the fold models' softmax")
        + ".",
        f"Intervals are {100 * CONFIDENCE:.0f} % percentile bootstrap intervals over {options.n_boot} "
        "resamples of the test **studies** (a study's rows stay together); a difference between two "
        "models is a paired bootstrap (the same resampled studies for both).",
        "n = labelled rows per class, Normal/Mild / Moderate / Severe, that a number rests on.",
        GMACS_NOTE,
    ]
    return [("h", 2, "How these numbers were made"), ("list", items)]


def partitions_blocks(metrics: pl.DataFrame, grid: Grid) -> list[Block]:
    blocks: list[Block] = [("h", 2, "Trained partitions")]
    if metrics.height:
        headers = [
            "Architecture",
            "Category",
            "Model (timm)",
            "Params",
            "GMACs",
            "Folds trained",
            "Loss",
            "Class weights",
            "Registered version",
        ]
        rows = [
            [
                arch_title(r["arch"]),
                r["category"].upper(),
                f"`{r['timm_name']}`",
                fmt_params(r["params"]),
                fmt_num(r["gmacs"]),
                _folds(r),
                r["loss"] or "—",
                r["weight_scheme"] or "—",
                f"`{r['registered_model']}` v{r['model_version']}" if r["model_version"] else "—",
            ]
            for r in metrics.iter_rows(named=True)
        ]
        blocks.append(("table", headers, rows))
    missing = [
        f"{arch_title(a)} × {c.upper()}"
        + (f": {grid.incomplete[(a, c)]}" if (a, c) in grid.incomplete else "")
        for a, c in grid.missing
    ]
    blocks.append(("list", [f"missing: {m}" for m in missing] or ["missing: none"]))
    return blocks


def oof_blocks(metrics: pl.DataFrame) -> list[Block]:
    """The cross-validation table, described for what it is."""
    blocks: list[Block] = [
        ("h", 2, "Cross-validation (out-of-fold), for reference"),
        (
            "p",
            "Each cross-validation study is scored by the fold model that did not train on it; the "
            "table covers the studies of the folds that were trained (all of the cv split when every "
            "fold was). These rows also chose each fold's best epoch, so they flatter the model a "
            "little; the test split above does not.",
        ),
    ]
    if not metrics.height:
        return blocks
    headers = [
        "Architecture",
        "Category",
        "Folds trained",
        "Studies scored / cv studies",
        "Macro recall",
        *[f"Recall {t}" for t in CLASS_TITLES],
        "n",
    ]
    rows = [
        [
            arch_title(r["arch"]),
            r["category"].upper(),
            _folds(r),
            f"{r['oof_n_studies']} / {r['oof_cv_studies'] if r['oof_cv_studies'] is not None else '?'}",
            fmt_pct(r["oof_macro_recall"]),
            *[fmt_pct(r[f"oof_recall_{c}"]) for c in CLASS_NAMES],
            fmt_counts([r[f"oof_n_{c}"] for c in CLASS_NAMES]),
        ]
        for r in metrics.iter_rows(named=True)
    ]
    blocks.append(("table", headers, rows))
    return blocks


def loss_blocks(mlflow_runs: pl.DataFrame | None) -> tuple[list[Block], pl.DataFrame | None]:
    blocks: list[Block] = [
        ("h", 2, "Training runs in MLflow: best run per architecture × category × loss"),
        (
            "p",
            "Every finished training of a partition, by its out-of-fold macro recall (cross-validation "
            "split). Retrainings with another loss or class weighting appear here as further runs.",
        ),
    ]
    if mlflow_runs is None:
        blocks.append(("p", "No MLflow runs were given."))
        return blocks, None
    table = best_runs_by_loss(mlflow_runs)
    if table.is_empty():
        blocks.append(("p", "No finished MLflow run with an out-of-fold macro recall yet."))
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
    headers = ["Architecture", "Category", "Loss", "Best OOF macro recall", "Runs", "Run id"]
    blocks.append(("table", headers, rows))
    return blocks, table


def champion_blocks(
    outcomes: dict[str, ChampionOutcome] | None,
    candidates: dict[str, dict[str, Any]],
    options: EvaluationOptions,
) -> list[Block]:
    """The champion decisions (or, without a registry, the candidates the rule would start from)."""
    blocks: list[Block] = [("h", 2, "Champion vs challenger")]
    rule = (
        "the lower end of the paired 95 % interval of challenger − champion"
        if options.champion_rule == "bootstrap"
        else "the paired difference challenger − champion"
    )
    blocks.append(
        (
            "p",
            "Per category, the **challenger** is the trained model with the best out-of-fold macro recall "
            "(ties: fewer MACs), so the test split chooses no architecture. It replaces the `champion` alias "
            f"of `lss-<category>` only when {rule} in test macro recall exceeds "
            f"{options.champion_margin_pts:g} percentage points, on the same test studies. The first "
            "training of a category crowns its challenger. Each decision is tagged on the challenger's "
            "registered version in MLflow and logged in the `lss-evaluation` run.",
        )
    )
    if outcomes is None:
        blocks.append(("p", "No registry was consulted for this report; the challengers would be:"))
        rows = [
            [
                cat.upper(),
                f"`lss-{cat}`",
                arch_title(str(c["arch"])),
                str(c.get("model_version") or "—"),
                fmt_pct(c.get("oof_macro_recall")),
            ]
            for cat, c in candidates.items()
        ]
        headers = ["Category", "Registered model", "Challenger", "Version", "OOF macro recall"]
        blocks.append(("table", headers, rows))
        return blocks
    if not outcomes:
        blocks.append(("p", "No registered model to judge yet."))
        return blocks
    headers = [
        "Category",
        "Champion before",
        "Challenger",
        "Champion scored from",
        "Challenger − champion, pts (95 % CI)",
        "Studies",
        "n",
        "Decision",
        "Champion now",
        "Champion test macro recall (95 % CI)",
    ]
    rows = []
    for cat, outcome in outcomes.items():
        d = outcome.decision
        comparison = d.comparison
        diff = comparison.difference if comparison else None
        recall = outcome.macro_recall
        rows.append(
            [
                f"{cat.upper()} (`{d.registered_model}`)",
                f"v{d.champion_before} ({arch_title(d.champion_before_arch or '?')})"
                if d.champion_before
                else "none",
                f"v{d.challenger} ({arch_title(d.challenger_arch)})",
                d.champion_source or "—",
                fmt_pts_ci(100 * diff.point, 100 * diff.lo, 100 * diff.hi) if diff else "—",
                str(comparison.n_studies) if comparison else "—",
                fmt_counts(comparison.class_counts) if comparison else "—",
                f"**{d.outcome}**",
                f"v{d.champion_after} ({arch_title(d.champion_after_arch)})",
                fmt_pct_ci(recall.point, recall.lo, recall.hi) if recall else "—",
            ]
        )
    blocks.append(("table", headers, rows))
    blocks.append(("list", [f"{cat.upper()}: {o.decision.reason}" for cat, o in outcomes.items()]))
    return blocks
