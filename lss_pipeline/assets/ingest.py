"""`dicom_metadata`, `labels`, `data_splits` and their checks: the RSNA folder as tidy Parquet tables."""

import contextlib
from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from lss_pipeline.assets._progress import log_progress
from lss_pipeline.core.dicom import store as dicom_store
from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.core.labels import anatomy, consistency, splits
from lss_pipeline.core.labels import store as labels_store
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.resources import LssSettings

# Bad input (ValueError: label validation, empty inputs, impossible splits) and file problems
# (OSError: missing input, unwritable folder, lock timeout) say what is wrong in their message:
# the UI shows it as the run's failure, not as a traceback.
_USER_ERRORS = (ValueError, OSError)


@contextlib.contextmanager
def _fail_clearly() -> Iterator[None]:
    try:
        yield
    except _USER_ERRORS as err:
        raise Failure(description=str(err)) from err


class IngestConfig(Config):
    # Publish even when the inputs hold no data rows, or would shrink the published table to
    # near-empty (under 10 %): on purpose only, as it replaces a good table.
    allow_empty: bool = False


class DicomMetadataConfig(IngestConfig):
    workers: int = 0  # header-reading processes; 0: one per CPU


@asset(
    group_name="ingest",
    # New label files come with the new studies' images: rescan with them.
    deps=["label_files"],
    kinds={"parquet", "dicom"},
    description="One row per DICOM instance (geometry, encoding; no PHI) plus a quarantine table.",
)
def dicom_metadata(
    context: AssetExecutionContext, settings: LssSettings, config: DicomMetadataConfig
) -> MaterializeResult:
    paths = settings.get().paths
    with _fail_clearly():
        result = dicom_store.ingest_dicom_folder(
            paths,
            workers=config.workers or None,
            progress=log_progress(context, "DICOM headers"),
            allow_empty=config.allow_empty,
        )
    metadata, quarantine = result.metadata, result.quarantine
    by_reason = quarantine.group_by("error_type").len().sort("len", descending=True)
    per_series = metadata.group_by("series_description").len().sort("series_description")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(paths.dicom_metadata)),
            "quarantine_path": MetadataValue.path(str(paths.quarantine)),
            "instances": metadata.height,
            "studies": metadata["study_id"].n_unique(),
            "series": metadata["series_id"].n_unique(),
            "quarantined": quarantine.height,
            "quarantine_by_reason": MetadataValue.md(markdown_table(by_reason)),
            "instances_by_series_description": MetadataValue.md(markdown_table(per_series)),
        }
    )


@asset(
    group_name="ingest",
    deps=["label_files"],
    kinds={"parquet"},
    description="Long-form labels: one row per study × condition × side × level, joined with coordinates.",
)
def labels(context: AssetExecutionContext, settings: LssSettings, config: IngestConfig) -> MaterializeResult:
    cfg = settings.get()
    paths = cfg.paths
    with _fail_clearly():
        table, stats, _ = labels_store.ingest_labels(paths, allow_empty=config.allow_empty)
    # Which label files these rows come from (the data version of label_files).
    labels_hash = read_label_snapshot(cfg.paths.label_files, settle_seconds=0.0).labels_hash
    class_counts = (
        table.with_columns(pl.col("severity").fill_null("(blank)"))
        .group_by("category", "severity")
        .len()
        .sort("category", "severity")
    )
    context.log.info(f"labels: {table.height} rows; quirks: {stats}")
    # Numbers become their own metadata entries, which the UI plots across materializations.
    numeric_stats = {
        k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(paths.labels)),
            "labels_hash": labels_hash or "",
            "rows": table.height,
            "studies": table["study_id"].n_unique(),
            "class_counts": MetadataValue.md(markdown_table(class_counts)),
            "stats": MetadataValue.json(stats),
            **numeric_stats,
        }
    )


class SplitsConfig(Config):
    n_folds: int = 0  # K cross-validation folds over the non-test studies (0: the profile's, demo 3, full 5)
    test_share: float = splits.DEFAULT_TEST_SHARE  # held-out studies no training or choice ever sees
    seed: int = 0  # changing it moves every study: the test split is no longer the same


@asset(
    group_name="ingest",
    deps=["labels"],
    kinds={"parquet"},
    description="A held-out test split and K study-grouped cv folds; a study's place comes from a hash of "
    "its id and the seed, so adding or removing studies never moves another.",
)
def data_splits(settings: LssSettings, config: SplitsConfig) -> MaterializeResult:
    paths = settings.get().paths
    n_folds = config.n_folds or settings.get().profile.n_folds
    with _fail_clearly():
        labels_df = labels_store.read_labels(paths)
        result = splits.make_splits(
            labels_df, n_folds=n_folds, test_share=config.test_share, seed=config.seed
        )
        splits.write_splits(result, paths)
    per_part = result.group_by("split", "fold").len().sort("split", "fold")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(paths.data_splits)),
            "studies": result.height,
            "test_studies": result.filter(pl.col("split") == splits.TEST).height,
            "n_folds": n_folds,
            "test_share": config.test_share,
            "seed": config.seed,
            "studies_per_part": MetadataValue.md(markdown_table(per_part)),
            "class_counts": MetadataValue.md(
                "Label rows (studies) per category × class and part; `!` marks a part that lacks "
                "the class badly.\n\n" + splits.class_counts_markdown(splits.class_counts(result, labels_df))
            ),
        }
    )


# ----------------------------------------------------------------------------- checks


def _missing_input(err: FileNotFoundError) -> AssetCheckResult:
    """A check whose input asset was never built: a warning that says which, not a crash."""
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.WARN,
        description=str(err),
        metadata={"skipped_because": str(err)},
    )


@asset_check(
    asset="labels",
    additional_deps=["dicom_metadata"],
    description="Every label coordinate points at an instance present in dicom_metadata "
    "and lies inside its image.",
)
def coordinates_point_at_instances(settings: LssSettings) -> AssetCheckResult:
    paths = settings.get().paths
    try:
        labels_df = labels_store.read_labels(paths)
        metadata, _ = dicom_store.read_metadata(paths)
    except FileNotFoundError as err:
        return _missing_input(err)
    problems = consistency.coordinate_problems(labels_df, metadata)
    by_problem = problems.group_by("problem").len().sort("problem")
    return AssetCheckResult(
        passed=problems.is_empty(),
        # The real dataset has a few such points; crops skip them, so this warns.
        severity=AssetCheckSeverity.WARN,
        metadata={
            "points_checked": labels_df.filter(pl.col("x").is_not_null()).height,
            "bad_points": problems.height,
            "by_problem": MetadataValue.json(dict(by_problem.iter_rows())),
            "examples": MetadataValue.md(markdown_table(problems, max_rows=10)),
        },
    )


@asset_check(
    asset="labels",
    additional_deps=["dicom_metadata"],
    description="Each labelled study has the series its categories need "
    "(SCS: Sagittal T2/STIR, NFS: Sagittal T1, SBS: Axial T2).",
)
def studies_have_required_series(settings: LssSettings) -> AssetCheckResult:
    paths = settings.get().paths
    try:
        labels_df = labels_store.read_labels(paths)
        metadata, _ = dicom_store.read_metadata(paths)
    except FileNotFoundError as err:
        return _missing_input(err)
    missing = consistency.missing_series(labels_df, metadata)
    return AssetCheckResult(
        passed=missing.is_empty(),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "studies_checked": labels_df["study_id"].n_unique(),
            "missing_pairs": missing.height,
            "by_category": MetadataValue.json(dict(missing.group_by("category").len().iter_rows())),
            "examples": MetadataValue.md(markdown_table(missing, max_rows=10)),
        },
    )


@asset_check(
    asset="labels",
    additional_deps=["dicom_metadata"],
    description="Labels make anatomical sense in patient space (LPS, from dicom_metadata geometry): levels "
    f"head to feet, {anatomy.MIN_LEVEL_SPACING_MM:g}–{anatomy.MAX_LEVEL_SPACING_MM:g} mm apart per level, "
    "left/right points on their side of the canal mid-line, no left and right foraminal point on one "
    f"instance, none over {anatomy.FAR_OFF_PX:g} px off the spine line. Warns with a table of offenders "
    "(study, row, reason, measured value) for a radiologist to fix; level_crops can leave them out "
    "(exclude_implausible_labels).",
)
def labels_make_anatomical_sense(settings: LssSettings) -> AssetCheckResult:
    paths = settings.get().paths
    try:
        labels_df = labels_store.read_labels(paths)
    except FileNotFoundError as err:
        return _missing_input(err)
    try:
        metadata: pl.DataFrame | None = dicom_store.read_metadata(paths)[0]
    except FileNotFoundError:
        metadata = None  # the checks that need only the CSV still run; `skipped` says so
    report = anatomy.check_anatomy(labels_df, metadata)
    counts = report.counts
    by_reason = pl.DataFrame(
        {"reason": list(counts), "rows": list(counts.values()), "meaning": list(anatomy.REASONS.values())}
    )
    found = ", ".join(f"{n} {reason}" for reason, n in counts.items() if n) or "none"
    description = (
        f"{report.offending_rows} label rows of {report.offending_studies} studies implausible ({found})"
    )
    return AssetCheckResult(
        passed=report.offenders.is_empty() and report.skipped is None,
        # The real dataset has such rows; a radiologist fixes them, training need not stop.
        severity=AssetCheckSeverity.WARN,
        description=description + (f"; {report.skipped}" if report.skipped else ""),
        metadata={
            "points_checked": report.points,
            "points_in_patient_space": report.points_in_patient_space,
            "offending_rows": report.offending_rows,
            "offending_studies": report.offending_studies,
            **{f"offenders_{reason}": n for reason, n in counts.items()},
            "by_reason": MetadataValue.md(markdown_table(by_reason)),
            "offenders": MetadataValue.md(anatomy.offenders_markdown(report.offenders)),
            **({"skipped_because": report.skipped} if report.skipped else {}),
        },
    )


class QuarantineBoundConfig(Config):
    max_share: float = 0.05  # of all files seen; the real data loses far fewer


@asset_check(
    asset="dicom_metadata",
    description="The share of quarantined DICOM files stays under a configurable bound "
    "(fails when no file was seen).",
)
def quarantine_share_below_bound(settings: LssSettings, config: QuarantineBoundConfig) -> AssetCheckResult:
    try:
        metadata, quarantine = dicom_store.read_metadata(settings.get().paths)
    except FileNotFoundError as err:
        return _missing_input(err)
    facts = dicom_store.quarantine_share(metadata, quarantine, config.max_share)
    return AssetCheckResult(
        passed=bool(facts["passed"]),
        description=facts["description"],
        metadata={
            "quarantined": facts["quarantined"],
            "files": facts["files"],
            "share": facts["share"] if facts["share"] is not None else float("nan"),
            "bound": config.max_share,
            "by_reason": MetadataValue.json(facts["by_reason"]),
        },
    )


@asset_check(
    asset="data_splits",
    additional_deps=["labels"],
    description="Every labelled study is in the test split or one cv fold, no fold is empty, and no part "
    "lacks a class badly (fewer studies of it than a fair draw would give, binomial tail < 1e-4).",
)
def folds_are_study_grouped_and_stratified(settings: LssSettings) -> AssetCheckResult:
    paths = settings.get().paths
    try:
        labels_df = labels_store.read_labels(paths)
        split_table = splits.read_splits(paths)
    except FileNotFoundError as err:
        return _missing_input(err)
    report = splits.check_splits(split_table, labels_df)
    counts = splits.class_counts(split_table, labels_df)
    return AssetCheckResult(
        passed=bool(report["passed"]),
        description=(f"{len(report['lacking'])} part(s) lack a class badly" if report["lacking"] else None),
        metadata={
            "report": MetadataValue.json(report),
            "class_counts": MetadataValue.md(splits.class_counts_markdown(counts)),
        },
    )
