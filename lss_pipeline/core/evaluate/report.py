"""The evaluation report from a loaded grid: Markdown, self-contained HTML, plots, metrics tables.

Every file goes where ``paths`` says (``report_markdown``, ``report_html``, ``report_metrics_csv`` /
``_parquet``, ``report_plot``), written atomically; the Markdown last, so its presence means the
whole report was written. No MLflow here: the caller passes runs and champion decisions in.
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
from lss_pipeline.core.evaluate import headline, plots, sections
from lss_pipeline.core.evaluate.bootstrap import seed_for
from lss_pipeline.core.evaluate.calibration import (
    apply_temperature,
    calibrated_table,
    labelled_arrays,
    reliability,
)
from lss_pipeline.core.evaluate.champions import choose_champions
from lss_pipeline.core.evaluate.claims import Claim, check_claims
from lss_pipeline.core.evaluate.kaggle import competition_for_arch, priors_of
from lss_pipeline.core.evaluate.load import Grid
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.promote import ChampionOutcome
from lss_pipeline.core.evaluate.render import Block, render_html, render_markdown
from lss_pipeline.core.evaluate.table import metrics_table
from lss_pipeline.core.paths import Paths


@dataclass
class ReportResult:
    markdown_path: Path
    html_path: Path
    csv_path: Path
    parquet_path: Path
    plot_paths: list[Path]
    # The headline table as Markdown, for the Dagster UI metadata.
    markdown_table: str
    # One row per available arch × category (table.METRICS_SCHEMA); fractions, not percent.
    metrics: pl.DataFrame
    # (arch, category) of partitions not (fully) trained yet.
    missing: list[tuple[str, str]]
    # arch -> Kaggle metric on the test split (competition_for_arch's keys).
    competition: dict[str, dict[str, Any]]
    claims: list[Claim] = field(default_factory=list)
    # category -> challenger candidate (best out-of-fold macro recall), whether or not a registry was asked.
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Best MLflow run per arch × category × loss; None when no runs were given.
    loss_table: pl.DataFrame | None = None


def kaggle_per_arch(
    grid: Grid, metrics: pl.DataFrame, options: EvaluationOptions, progress: Callable[[str], None]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """arch -> Kaggle metric of its test predictions (OOF label priors); arch -> categories it lacks."""
    competition: dict[str, dict[str, Any]] = {}
    skipped: dict[str, list[str]] = {}
    for arch in grid.archs:
        have = grid.of_arch(arch)
        lacking = [c for c in CATEGORIES if c not in have]
        if lacking:
            skipped[arch] = lacking
            continue
        priors = priors_of({c: p.oof for c, p in have.items()})
        seed = seed_for(f"kaggle|{arch}", options.seed)
        tables = {c: p.test for c, p in have.items()}
        competition[arch] = competition_for_arch(
            tables, grid.labels, priors, n_boot=options.n_boot, seed=seed
        )
        temperatures = {
            r["category"]: r["temperature"]
            for r in metrics.filter(pl.col("arch") == arch).iter_rows(named=True)
        }
        calibrated = {c: calibrated_table(t, temperatures[c]) for c, t in tables.items()}
        after = competition_for_arch(calibrated, grid.labels, priors, n_boot=options.n_boot, seed=seed)
        competition[arch] |= {f"calibrated_{k}": after[k] for k in ("score", "score_lo", "score_hi")}
        progress(f"{arch}: Kaggle score on the test split {competition[arch]['score']:.4f}")
    return competition, skipped


def _reliability_plots(grid: Grid, metrics: pl.DataFrame) -> list[tuple[str, str, bytes]]:
    temperatures = {(r["arch"], r["category"]): r["temperature"] for r in metrics.iter_rows(named=True)}
    out = []
    for cat in grid.categories:
        curves = []
        for partition in grid.of_category(cat):
            proba, labels = labelled_arrays(partition.test)
            after = apply_temperature(proba, temperatures[(partition.arch, cat)])
            curves.append((partition.arch, reliability(proba, labels), reliability(after, labels)))
        if curves:
            caption = f"Reliability diagram (test split), {cat.upper()}, before and after temperature scaling"
            out.append((f"reliability_{cat}", caption, plots.reliability_png(cat, curves)))
    return out


def _plots(metrics: pl.DataFrame, categories: tuple[str, ...]) -> list[tuple[str, str, bytes]]:
    """(file stem, caption, PNG) of every plot."""
    out = []
    rows = list(metrics.iter_rows(named=True))
    for r in rows:
        title = f"{plots.arch_title(r['arch'])} {r['category'].upper()}"
        out.append(
            (
                f"confusion_{r['arch']}_{r['category']}",
                f"Test confusion matrix, {title}",
                plots.confusion_png(r),
            )
        )
    for cat in categories:
        cat_rows = [r for r in rows if r["category"] == cat]
        if not cat_rows:
            continue
        caption = f"Per-class test recall, {cat.upper()}"
        out.append((f"recall_per_class_{cat}", caption, plots.recall_bars_png(cat_rows, cat)))
        with_macs = [r for r in cat_rows if r["gmacs"]]
        if with_macs:
            caption = f"Test macro recall vs GMACs, {cat.upper()}"
            out.append((f"recall_vs_gmacs_{cat}", caption, plots.recall_vs_gmacs_png(with_macs, cat)))
    return out


def build_report(
    grid: Grid,
    paths: Paths,
    *,
    dataset: dict[str, Any],
    options: EvaluationOptions | None = None,
    champions: dict[str, ChampionOutcome] | None = None,
    mlflow_runs: pl.DataFrame | None = None,
    metrics: pl.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Write the report of ``grid``.

    ``champions``: category -> the champion decision the caller made (``promote.decide_champions``);
    None lists the challengers the rule would start from. ``metrics``: the grid's
    ``table.metrics_table`` when the caller already computed it.
    """
    say = progress or (lambda _msg: None)
    options = (options or EvaluationOptions()).validate()
    metrics = metrics if metrics is not None else metrics_table(grid, options)
    competition, skipped = kaggle_per_arch(grid, metrics, options, say)
    claims = check_claims(grid, options)

    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [("h", 1, "LSS grading — evaluation report"), *sections.dataset_blocks(dataset)]
    blocks.append(("p", f"Generated {generated} from `{paths.models_dir}`."))
    blocks += sections.method_blocks(grid, options)
    blocks += sections.partitions_blocks(metrics, grid)
    headline_blocks, markdown_table = headline.headline_blocks(metrics)
    blocks += headline_blocks
    blocks += headline.kaggle_blocks(competition, skipped)
    blocks += headline.thesis_blocks(claims, metrics)
    blocks += headline.calibration_blocks(metrics)
    candidates = choose_champions(metrics) if len(metrics) else {}
    blocks += sections.champion_blocks(champions, candidates, options)
    blocks += sections.oof_blocks(metrics)
    loss_blocks, loss_table = sections.loss_blocks(mlflow_runs)
    blocks += loss_blocks

    made = _plots(metrics, grid.categories) + _reliability_plots(grid, metrics)
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
        markdown_table=markdown_table,
        metrics=metrics,
        missing=list(grid.missing),
        competition=competition,
        claims=claims,
        candidates=candidates,
        loss_table=loss_table,
    )
