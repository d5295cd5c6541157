"""The code location loads and holds the asset graph of DESIGN.md."""

from dagster import AssetKey

from lss_pipeline.definitions import defs
from lss_pipeline.jobs import RETRAIN_ASSETS

DESIGN_ASSETS = {
    "dicom_metadata", "labels", "data_splits", "level_crops", "class_weights", "trained_model", "evaluation_report",
}


def test_every_design_asset_is_defined():
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == DESIGN_ASSETS


def test_partitions():
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("level_crops")).partitions_def.get_partition_keys() == ["scs", "nfs", "sbs"]
    model_keys = graph.get(AssetKey("trained_model")).partitions_def.get_partition_keys()
    assert len(model_keys) == 9 and "convnext|scs" in model_keys


def test_dependencies_follow_the_design():
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    assert parents["labels"] == set()
    assert parents["level_crops"] == {"dicom_metadata", "labels", "data_splits"}
    assert parents["class_weights"] == {"level_crops", "data_splits"}
    assert parents["trained_model"] == {"level_crops", "class_weights", "data_splits"}
    assert parents["evaluation_report"] == {"trained_model"}


def test_jobs_resolve_and_retrain_covers_labels_to_report():
    for name in ("ingest_job", "crops_job", "training_job", "training_grid_k8s_job", "report_job", "retrain_job"):
        assert defs.resolve_job_def(name) is not None
    assert RETRAIN_ASSETS[0] == "labels" and RETRAIN_ASSETS[-1] == "evaluation_report"


def test_asset_checks_guard_the_joins():
    check_names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "coordinates_point_at_instances",
        "studies_have_required_series",
        "quarantine_share_below_bound",
        "folds_are_study_grouped_and_stratified",
    } <= check_names
