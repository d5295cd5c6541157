"""The evaluation_report asset in Dagster: one call into core, report files, UI metadata, MLflow run."""

from __future__ import annotations

import json

import mlflow
from dagster import AssetKey, materialize
from mlflow.tracking import MlflowClient

from lss_pipeline.assets import evaluate
from lss_pipeline.core.paths import Paths
from lss_pipeline.resources import LssSettings, MLflowTracking
from lss_pipeline_tests.conftest import write_label_files
from lss_pipeline_tests.core.evaluate.fabricate import write_partition, write_splits


def test_evaluation_report_writes_report_crowns_champion_and_logs_a_run(tmp_path):
    data, raw = tmp_path / "data", tmp_path / "raw"
    write_label_files(raw)
    paths = Paths(data_dir=data, raw_dir=raw)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model("lss-scs")
    (tmp_path / "model").mkdir()
    version = client.create_model_version(
        "lss-scs", source=(tmp_path / "model").as_uri(), tags={"arch": "convnext"}
    )
    for cat in ("scs", "nfs", "sbs"):
        write_partition(
            paths, "convnext", cat, (1, 1, 1), version=str(version.version) if cat == "scs" else None
        )
    write_splits(paths)

    result = materialize(
        [evaluate.evaluation_report],
        resources={
            "settings": LssSettings(data_dir=str(data), raw_dir=str(raw)),
            "mlflow_tracking": MLflowTracking(tracking_uri=tracking_uri, artifacts_dir=str(tmp_path / "art")),
        },
        run_config={"ops": {"evaluation_report": {"config": {"n_boot": 200, "champion_margin_pts": 1.0}}}},
    )
    assert result.success
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey("evaluation_report")
    ]
    metadata = event.materialization.metadata
    assert metadata["report_html"].value == str(paths.report_html) and paths.report_html.is_file()
    assert paths.report_markdown.is_file() and metadata["partitions"].value == 3
    assert "| ConvNeXt | SCS |" in metadata["table"].value
    champions = json.loads(paths.champions_json.read_text())
    assert set(champions) == {"scs"} and champions["scs"]["decision"] == "crowned"
    assert champions["scs"]["margin_pts"] == 1.0
    # The champion's interval is the one the report prints for that model, not a second draw.
    import polars as pl

    row = pl.read_parquet(paths.report_metrics_parquet).filter(
        (pl.col("arch") == "convnext") & (pl.col("category") == "scs")
    )
    assert champions["scs"]["macro_recall_ci95"] == [
        row["test_macro_recall_lo"][0],
        row["test_macro_recall_hi"][0],
    ]
    assert champions["scs"]["macro_recall_test_studies"] == row["test_n_studies"][0]
    assert sum(champions["scs"]["macro_recall_class_counts"]) == row["test_n_rows"][0]
    assert str(client.get_model_version_by_alias("lss-scs", "champion").version) == str(version.version)
    run = mlflow.get_run(metadata["mlflow_run_id"].value)
    assert run.info.status == "FINISHED" and run.data.tags["dagster_run_id"] == result.run_id
    assert run.data.tags["scs_champion_decision"] == "crowned" and run.data.params["n_boot"] == "200"
    assert "convnext_scs_test_macro_recall" in run.data.metrics
