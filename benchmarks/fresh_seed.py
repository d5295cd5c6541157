"""The demo's registered graders on studies from a seed nothing has used: do the report's intervals hold?

A data folder already run (``make demo``, or any ``LSS_DATA_DIR``) holds the report
(``reports/metrics.parquet``: test-split macro recall with its 95 % study-bootstrap interval per
architecture and category) and the graders in the MLflow registry (``lss-{category}``, one version
per training, tagged with its architecture; ``@champion``). This script writes a *fresh* synthetic
set with the same generator and class shares as the demo but another seed (default 31337: no test,
benchmark or demo uses it), ingests it, cuts a crop at every labelled point and scores each
architecture's newest registered version, and the champion, with the report's own bootstrap
(``core/evaluate/bootstrap.recall_intervals``, studies resampled). The table says, per model,
whether the fresh-set macro recall lies inside the report's test-split interval.

The written labels carry the generator's annotator noise (about 4 % an adjacent class), and how
much that costs differs from one draw of studies to the next. So each category also gets the
*ceiling* (the macro recall of a perfect reader, who predicts every cell's true grade, against the
written labels of this very set) and each model its macro recall against the *true* grades
(``synth_train_truth.csv``: what the anatomy shows). Two sets are compared on those two, not on
the written labels alone.

    .venv/bin/python benchmarks/fresh_seed.py --data-dir data --out /tmp/lss_fresh
    .venv/bin/python benchmarks/fresh_seed.py --data-dir data --out /tmp/lss_fresh --studies 150 --seed 31337

Not a test: it needs a data folder with trained graders, and its figures go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import polars as pl
from synthetic_sets import scanned_set, true_grades

from lss_pipeline.core.constants import CATEGORIES, CLASS_NAMES, PROB_COLUMNS
from lss_pipeline.core.evaluate.bootstrap import recall_intervals, seed_for
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.core.predict.grade import grade_points, load_grader, registered_grader_name
from lss_pipeline.core.settings import Settings
from lss_pipeline.core.train import tracking

N_BOOT = 2000


def fresh_set(
    root: Path, studies: int, seed: int, sites: int, correlated_grades: bool | None = None
) -> tuple[Settings, pl.DataFrame, pl.DataFrame]:
    """A fresh set under ``root``, with the demo's class shares and no test studies."""
    from lss_pipeline.demo import DEMO_CLASS_SHARES

    return scanned_set(
        root, studies, seed, class_shares=DEMO_CLASS_SHARES, sites=sites, correlated_grades=correlated_grades
    )


def ceiling(truth_rows: pl.DataFrame, category: str) -> tuple[float, str]:
    """Macro recall (and its interval) of a perfect reader against the written labels of these rows."""
    one_hot = [(pl.col("true_label") == k).cast(pl.Float64).alias(c) for k, c in enumerate(PROB_COLUMNS)]
    perfect = truth_rows.with_columns(one_hot)
    ci = recall_intervals(perfect, n_boot=N_BOOT, seed=seed_for(f"ceiling|{category}"))
    return ci.macro.point, f"{100 * ci.macro.lo:.1f}–{100 * ci.macro.hi:.1f}"


def newest_version_per_arch(category: str) -> dict[str, str]:
    """arch -> the newest registered version of ``lss-{category}`` (variants are never registered)."""
    from mlflow.tracking import MlflowClient

    newest: dict[str, int] = {}
    for version in MlflowClient().search_model_versions(f"name='{registered_grader_name(category)}'"):
        arch = (version.tags or {}).get("arch")
        if arch:
            newest[arch] = max(newest.get(arch, 0), int(version.version))
    return {arch: str(v) for arch, v in sorted(newest.items())}


def site_table(scored: pl.DataFrame, table: pl.DataFrame, fresh: Settings) -> pl.DataFrame | None:
    """Per imaging site of a multi-site set (``synth_manifest.json``), each champion's macro recall."""
    manifest = fresh.paths.synth_manifest
    series = json.loads(manifest.read_text()).get("series", []) if manifest.exists() else []
    site_of = {s["study_id"]: s["site"] for s in series if s.get("site")}
    if not site_of:
        return None
    sites = pl.DataFrame({"study_id": list(site_of), "site": list(site_of.values())})
    champions = table.filter(pl.col("champion") == "yes").select("category", "arch")
    rows = []
    for category, arch in champions.iter_rows():
        mine = scored.filter((pl.col("category") == category) & (pl.col("arch") == arch)).join(
            sites, on="study_id"
        )
        for site in sorted(mine["site"].unique().to_list()):
            part = mine.filter(pl.col("site") == site)
            ci = recall_intervals(part, n_boot=N_BOOT, seed=seed_for(f"fresh|{category}|{arch}|{site}"))
            macro = f"{100 * ci.macro.point:.1f} ({100 * ci.macro.lo:.1f}–{100 * ci.macro.hi:.1f})"
            rows.append({"category": category, "arch": arch, "site": site, "macro_recall": macro,
                         "studies": part["study_id"].n_unique(), "rows": part.height})  # fmt: skip
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LSS_DATA_DIR", "data")))
    parser.add_argument("--out", type=Path, default=Path("/tmp/lss_fresh"))
    parser.add_argument("--studies", type=int, default=150)
    parser.add_argument("--seed", type=int, default=31337)
    parser.add_argument("--sites", type=int, default=0, help="0: the plain protocol (as the demo)")
    parser.add_argument(
        "--independent-grades",
        action="store_true",
        help="with --sites: grades drawn cell by cell, as in the plain set, instead of correlated like "
        "the real file (either way about 4 %% of labels are an adjacent class)",
    )
    args = parser.parse_args()

    trained = Settings(data_dir=args.data_dir.resolve(), raw_dir=args.data_dir.resolve() / "raw")
    report = pl.read_parquet(trained.paths.report_metrics_parquet)
    tracking.configure_mlflow(trained.mlflow_tracking_uri, trained.mlflow_artifacts_dir)
    champions_file = trained.paths.champions_json
    champions = json.loads(champions_file.read_text()) if champions_file.exists() else {}

    correlated = False if args.independent_grades else None
    fresh, metadata, labels = fresh_set(args.out / "fresh", args.studies, args.seed, args.sites, correlated)
    profile = trained.profile
    true_by_row = true_grades(fresh.raw_dir)
    rows = []
    scored_rows: list[pl.DataFrame] = []
    for category in CATEGORIES:
        truth = labels.filter(
            (pl.col("category") == category) & pl.col("label").is_not_null() & pl.col("x").is_not_null()
        ).with_columns(pl.lit("ok").alias("status"))
        # A perfect reader's macro recall against these written labels: the most any model can score.
        ceiling_point, ceiling_ci = ceiling(
            truth.select("row_id", "study_id", "label").join(true_by_row, on="row_id"), category
        )
        versions = newest_version_per_arch(category)
        for arch, version in versions.items():
            grader = load_grader(
                category, version, crop_mm=profile.crop_mm, default_px=profile.crop_px,
                default_slices=profile.slices,
            )  # fmt: skip
            graded = grade_points(truth, metadata, fresh.raw_dir, {category: grader})
            scored = truth.select("row_id", "study_id", "label").join(graded.grades, on="row_id")
            scored_rows.append(scored.with_columns(category=pl.lit(category), arch=pl.lit(arch)))
            # seed_for: a stable seed (Python's hash() of a str changes from run to run)
            ci = recall_intervals(scored, n_boot=N_BOOT, seed=seed_for(f"fresh|{category}|{arch}"))
            against_truth = scored.join(true_by_row, on="row_id").with_columns(label=pl.col("true_label"))
            ci_true = recall_intervals(against_truth, n_boot=N_BOOT, seed=seed_for(f"true|{category}|{arch}"))
            mine = report.filter((pl.col("arch") == arch) & (pl.col("category") == category))
            test = mine.row(0, named=True) if mine.height else {}
            lo, hi = test.get("test_macro_recall_lo"), test.get("test_macro_recall_hi")
            counts = scored["label"].value_counts().sort("label")
            per_class = dict(zip(counts["label"].to_list(), counts["count"].to_list()))
            champion = (champions.get(category) or {}).get("version")
            rows.append(
                {
                    "category": category,
                    "arch": arch,
                    "version": version,
                    "champion": "yes" if str(champion) == version else "",
                    "test_macro_recall": test.get("test_macro_recall"),
                    "test_ci": f"{100 * lo:.1f}–{100 * hi:.1f}" if lo is not None else "",
                    "test_studies": test.get("test_n_studies"),
                    "fresh_macro_recall": ci.macro.point,
                    "fresh_ci": f"{100 * ci.macro.lo:.1f}–{100 * ci.macro.hi:.1f}",
                    "fresh_studies": scored["study_id"].n_unique(),
                    "fresh_n": "/".join(str(per_class.get(i, 0)) for i in range(len(CLASS_NAMES))),
                    "fresh_skipped": graded.skipped.height,
                    "ceiling": ceiling_point,
                    "ceiling_ci": ceiling_ci,
                    "fresh_below_ceiling": ceiling_point - ci.macro.point,
                    "true_macro_recall": ci_true.macro.point,
                    "true_ci": f"{100 * ci_true.macro.lo:.1f}–{100 * ci_true.macro.hi:.1f}",
                    "inside_test_ci": "" if lo is None else ("yes" if lo <= ci.macro.point <= hi else "NO"),
                }
            )
            print(rows[-1], flush=True)
    table = pl.DataFrame(rows)
    percent = (
        "test_macro_recall", "fresh_macro_recall", "ceiling", "fresh_below_ceiling", "true_macro_recall"
    )  # fmt: skip
    shown = table.with_columns([(pl.col(c) * 100).round(1) for c in percent])
    md = (
        f"trained: {trained.data_dir}; fresh set: {args.studies} studies, seed {args.seed}, "
        f"sites {args.sites}{', independent grades' if args.independent_grades else ''}; "
        f"macro recall in %, 95 % study-bootstrap intervals ({N_BOOT} resamples); n = Normal/Mild, Moderate, "
        "Severe labelled rows; ceiling = a perfect reader against the written labels; true = against the "
        "true grades\n\n" + markdown_table(shown)
    )
    by_site = site_table(pl.concat(scored_rows), table, fresh)
    if by_site is not None:
        md += "\n\nChampions' macro recall on the fresh set per imaging site (%, 95 % CI, labelled rows):\n\n"
        md += markdown_table(by_site)
    args.out.mkdir(parents=True, exist_ok=True)
    pl.concat(scored_rows).write_parquet(args.out / "fresh_rows.parquet")
    (args.out / "fresh_seed.md").write_text(md + "\n")
    table.write_csv(args.out / "fresh_seed.csv")
    print(md)


if __name__ == "__main__":
    main()
