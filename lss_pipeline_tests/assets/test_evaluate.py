"""The evaluation_report asset in Dagster: one call into core, report files, UI metadata, MLflow run."""

from __future__ import annotations

import mlflow
from dagster import AssetKey, materialize

from lss_pipeline.assets import evaluate
from lss_pipeline.core.paths import Paths
from lss_pipeline.resources import LssSettings, MLflowTracking
from lss_pipeline_tests.conftest import write_label_files
from lss_pipeline_tests.core.evaluate.fabricate import write_partition, write_splits


def test_evaluation_report_writes_report_and_mlflow_run(tmp_path):
    data, raw = tmp_path / "data", tmp_path / "raw"
    write_label_files(raw)
    paths = Paths(data_dir=data, raw_dir=raw)
    for cat in ("scs", "nfs", "sbs"):
        write_partition(paths, "convnext", cat, (1, 1, 1), version=None)
    write_splits(paths)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = materialize(
        [evaluate.evaluation_report],
        resources={
            "settings": LssSettings(data_dir=str(data), raw_dir=str(raw)),
            "mlflow_tracking": MLflowTracking(tracking_uri=tracking_uri, artifacts_dir=str(tmp_path / "art")),
        },
    )
    assert result.success
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey("evaluation_report")
    ]
    metadata = event.materialization.metadata
    assert metadata["report_html"].value == str(paths.report_html) and paths.report_html.is_file()
    assert paths.report_markdown.is_file() and paths.champions_json.is_file()
    assert metadata["partitions"].value == 3
    assert "| ConvNeXt | SCS |" in metadata["table"].value
    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.get_run(metadata["mlflow_run_id"].value)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_run_id"] == result.run_id
