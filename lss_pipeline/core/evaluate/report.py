"""The evaluation report from a loaded grid: Markdown, self-contained HTML, plots, metrics tables.

Every file goes where ``paths`` says (``report_markdown``, ``report_html``, ``report_metrics_csv`` /
``_parquet``, ``report_plot``), written atomically; the Markdown last, so its presence means the
whole report was written. No MLflow here: the caller passes runs and champions in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import CATEGORIES
from lss_pipeline.core.evaluate import plots, sections
from lss_pipeline.core.evaluate.champions import choose_champions
from lss_pipeline.core.evaluate.kaggle import competition_for_arch
from lss_pipeline.core.evaluate.load import Grid
from lss_pipeline.core.evaluate.render import Block, render_html, render_markdown
from lss_pipeline.core.markdown import markdown_rows
from lss_pipeline.core.paths import Paths


@dataclass
class ReportResult:
    markdown_path: Path
    html_path: Path
    csv_path: Path
    parquet_path: Path
    plot_paths: list[Path]
    # The main metrics table as Markdown, for the Dagster UI metadata.
    markdown_table: str
    # One row per available arch × category (table.METRICS_SCHEMA); fractions, not percent.
    metrics: pl.DataFrame
    # (arch, category) of partitions not trained yet.
    missing: list[tuple[str, str]]
    # arch -> competition_score(...) result plus n_filled_rows and solution_source.
    competition: dict[str, dict[str, Any]]
    # category -> champion (given champions, or choose_champions' candidates).
    champions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Best MLflow run per arch × category × loss; None when no runs were given.
    loss_table: pl.DataFrame | None = None


def _plots(metrics: pl.DataFrame, categories: tuple[str, ...]) -> list[tuple[str, str, bytes]]:
    """(file stem, caption, PNG) of every plot."""
    out = []
    rows = list(metrics.iter_rows(named=True))
    for r in rows:
        title = f"{plots.arch_title(r['arch'])} {r['category'].upper()}"
        out.append(
            (f"confusion_{r['arch']}_{r['category']}", f"Confusion matrix, {title}", plots.confusion_png(r))
        )
    for cat in categories:
        cat_rows = [r for r in rows if r["category"] == cat]
        if not cat_rows:
            continue
        out.append(
            (
                f"recall_per_class_{cat}",
                f"Per-class recall, {cat.upper()}",
                plots.recall_bars_png(cat_rows, cat),
            )
        )
        with_macs = [r for r in cat_rows if r["gmacs"]]
        if with_macs:
            out.append(
                (
                    f"recall_vs_gmacs_{cat}",
                    f"Macro recall vs GMACs, {cat.upper()}",
                    plots.recall_vs_gmacs_png(with_macs, cat),
                )
            )
    return out


def build_report(
    grid: Grid,
    metrics: pl.DataFrame,
    paths: Paths,
    *,
    dataset: dict[str, Any],
    champions: dict[str, dict[str, Any]] | None = None,
    mlflow_runs: pl.DataFrame | None = None,
    labels: pl.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Write the report of ``grid`` (its ``metrics`` from ``table.metrics_table``).

    ``champions``: category -> {arch, version, macro_recall, macs}, the models the caller set as
    ``champion``; None lists choose_champions' candidates instead. ``labels``: optional
    ``labels.parquet`` table for a complete Kaggle solution.
    """
    say = progress or (lambda _msg: None)
    blocks: list[Block] = [("h", 1, "LSS grading — evaluation report"), *sections.dataset_blocks(dataset)]

    competition: dict[str, dict[str, Any]] = {}
    skipped: dict[str, list[str]] = {}
    for arch in grid.archs:
        have = grid.of_arch(arch)
        lacking = [c for c in CATEGORIES if c not in have]
        if lacking:
            skipped[arch] = lacking
            continue
        competition[arch] = competition_for_arch({c: p.oof for c, p in have.items()}, labels)
        say(f"{arch}: Kaggle score {competition[arch]['score']:.4f}")

    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    blocks.append(("p", f"Generated {generated} from `{paths.models_dir}`; out-of-fold predictions."))
    blocks += sections.partitions_blocks(metrics, grid.missing)
    blocks.append(("h", 2, "Metrics per architecture × category"))
    blocks.append(
        (
            "p",
            "Macro recall = mean of per-class recall over the classes present (the thesis' "
            '"recall"); Δ vs ResNet = difference in macro recall, percentage points; '
            "GMACs = multiply-adds per crop (fvcore) / 10⁹; recall % / GMAC = macro recall "
            "in percent per GMAC; weighted log loss uses weights 1/2/4.",
        )
    )
    if len(metrics):
        headers, main_rows = sections.main_table(metrics)
        main_table = markdown_rows(headers, main_rows)
        blocks.append(("table", headers, main_rows))
        headers, per_class_rows = sections.per_class_table(metrics)
        blocks += [("h", 3, "Per-class recall, precision, F1"), ("table", headers, per_class_rows)]
    else:
        main_table = "No trained partition found."
        blocks.append(("p", main_table))
    blocks += sections.thesis_blocks(metrics, grid.categories)
    blocks += sections.competition_blocks(competition, skipped)
    chosen = champions if champions is not None else (choose_champions(metrics) if len(metrics) else {})
    blocks += sections.champion_blocks(chosen, aliases_set=champions is not None)
    loss_blocks, loss_table = sections.loss_blocks(mlflow_runs)
    blocks += loss_blocks

    made = _plots(metrics, grid.categories)
    if made:
        blocks.append(("h", 2, "Plots"))
        blocks += [("img", paths.report_plot(stem).name, caption, png) for stem, caption, png in made]

    markdown, page = render_markdown(blocks), render_html(blocks, "LSS evaluation report")
    plot_paths = [atomic.write_bytes(png, paths.report_plot(stem)) for stem, _, png in made]
    csv_path, parquet_path = paths.report_metrics_csv, paths.report_metrics_parquet
    with atomic.atomic_path(csv_path) as tmp:
        metrics.write_csv(tmp)
    atomic.write_parquet(metrics, parquet_path)
    html_path = atomic.write_text(page, paths.report_html)
    markdown_path = atomic.write_text(markdown, paths.report_markdown)
    say(f"report written to {paths.reports_dir}")
    return ReportResult(
        markdown_path=markdown_path,
        html_path=html_path,
        csv_path=csv_path,
        parquet_path=parquet_path,
        plot_paths=plot_paths,
        markdown_table=main_table,
        metrics=metrics,
        missing=list(grid.missing),
        competition=competition,
        champions=chosen,
        loss_table=loss_table,
    )
