"""`predictions` [test study]: a study of `test_images/` graded from its DICOMs alone, and the
submission rebuilt; `study_folders_sensor` adds a partition (and a run) for each new study folder.

Partitions are dynamic (`test_studies`), one per study folder: a new study is graded on its own,
nothing else is rebuilt. Each run writes its study's rows, then rebuilds `predictions.parquet`
and `submission.csv` from every graded study still present (core/predict/publish.py).
"""

from dagster import (
    AddDynamicPartitionsRequest,
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    Config,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    sensor,
)

from lss_pipeline.resources import LssSettings, MLflowTracking

PREDICTIONS_VERSION = "1"
TEST_STUDIES = "test_studies"
test_study_partitions = DynamicPartitionsDefinition(name=TEST_STUDIES)

SUBMISSION_CHECK = AssetCheckSpec(
    "submission_follows_sample",
    asset="predictions",
    description=(
        "submission.csv has sample_submission.csv's columns and row ids in its order, a row for every "
        "condition x level of every graded study, probabilities in [0, 1] that sum to 1."
    ),
)


class PredictionsConfig(Config):
    grader: str = "champion"  # alias or version number of the registered lss-{category} graders
    localizer: str = "latest"  # version number, `latest` or `@alias` of lss-localizer-{category}


@asset(
    group_name="predictions",
    partitions_def=test_study_partitions,
    deps=[AssetDep("level_localizer", partition_mapping=AllPartitionMapping()), "evaluation_report"],
    kinds={"pytorch", "parquet", "csv"},
    check_specs=[SUBMISSION_CHECK],
    code_version=PREDICTIONS_VERSION,
    description=(
        "One study of test_images/ graded from its DICOMs alone: localised (lss-localizer-*), cropped with "
        "the level_crops code, graded by the registered champions; predictions.parquet and submission.csv "
        "rebuilt from every graded study."
    ),
)
def predictions(
    context: AssetExecutionContext,
    config: PredictionsConfig,
    settings: LssSettings,
    mlflow_tracking: MLflowTracking,
):
    from lss_pipeline.core.markdown import markdown_rows
    from lss_pipeline.core.predict.publish import grade_test_study, publish_predictions
    from lss_pipeline.core.predict.run import load_models

    cfg = settings.get()
    study_id = int(context.partition_key)
    mlflow_tracking.configure(cfg)
    models = load_models(cfg, grader_ref=config.grader, localiser_ref=config.localizer, configure=False)
    for note in models.notes:
        context.log.warning(note)
    result = grade_test_study(cfg, study_id, models)
    for message in result.messages:
        context.log.warning(f"study {study_id}: {message}")
    published = publish_predictions(cfg.paths)
    graded = int(result.table["graded"].sum())
    timings = markdown_rows(["step", "seconds"], [[k, round(v, 3)] for k, v in result.timings.items()])
    yield MaterializeResult(
        metadata={
            "study_id": study_id,
            "graded_rows": graded,
            "rows": result.table.height,
            "not_graded": MetadataValue.md("\n".join(f"- {m}" for m in result.messages) or "_none_"),
            "timings": MetadataValue.md(timings),
            "models": MetadataValue.json(models.versions),
            "studies_in_submission": published.studies,
            "studies_not_graded_yet": MetadataValue.json(published.missing_studies),
            "predictions": MetadataValue.path(str(published.paths["predictions"])),
            "submission": MetadataValue.path(str(published.paths["submission"])),
        }
    )
    yield AssetCheckResult(
        check_name=SUBMISSION_CHECK.name,
        passed=not published.problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in published.problems) or "_none_"),
            "rows": published.submission.height,
        },
    )


@sensor(
    target=[predictions],
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description=(
        "Lists the study folders of test_images/ every minute; a new one gets a `predictions` partition and "
        "a run that grades it; a removed one loses its partition."
    ),
)
def study_folders_sensor(context: SensorEvaluationContext, settings: LssSettings):
    from lss_pipeline.core.predict.publish import test_study_ids

    present = {str(s) for s in test_study_ids(settings.get().paths)}
    known = set(context.instance.get_dynamic_partitions(TEST_STUDIES))
    new, gone = sorted(present - known), sorted(known - present)
    if not new and not gone:
        return SkipReason(f"{len(present)} test studies, none new or removed")
    requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    if new:
        requests.append(test_study_partitions.build_add_request(new))
    if gone:
        requests.append(test_study_partitions.build_delete_request(gone))
    return SensorResult(
        run_requests=[RunRequest(partition_key=key, run_key=f"predictions:{key}") for key in new],
        dynamic_partitions_requests=requests,
    )
