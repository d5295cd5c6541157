"""End to end on a small synthetic set: every asset, MLflow runs, report, champion aliases."""

import json

import mlflow
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from lss_pipeline.core.settings import Settings
from lss_pipeline.core.synth import generate_dataset
from lss_pipeline.demo import run_demo, summary_lines

pytestmark = pytest.mark.slow


def scs_runs() -> list:
    return mlflow.search_runs(experiment_names=["lss-scs"], output_format="list")


ARCHS = ("convnext", "resnet")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("lss_data")
    raw_dir = data_dir / "raw"
    generate_dataset(raw_dir, n_studies=16, seed=3, faults=True, rows=160)
    settings = Settings(data_dir=data_dir, raw_dir=raw_dir, profile_name="demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("LSS_DATA_DIR", str(data_dir))
    mp.setenv("LSS_RAW_DIR", str(raw_dir))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    outcome = run_demo(
        settings,
        archs=ARCHS,
        run_config={"trained_model": {"epochs": 2}, "level_crops": {"workers": 1}},
        say=lambda _msg: None,
    )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    yield settings, outcome
    mp.undo()


def test_every_planted_fault_is_quarantined_or_named(pipeline):
    settings, _ = pipeline
    manifest = json.loads((settings.raw_dir / "synth_manifest.json").read_text())
    quarantine = pl.read_parquet(settings.processed_dir / "quarantine.parquet")
    quarantined = set(quarantine["path"])
    for fault in manifest["faults"]:
        if fault["kind"] in ("non_dicom_file", "truncated_dicom"):
            assert fault["path"] in quarantined, fault


def test_one_mlflow_run_per_partition_and_registered_models(pipeline):
    settings, _ = pipeline
    for category in ("scs", "nfs", "sbs"):
        runs = mlflow.search_runs(experiment_names=[f"lss-{category}"], output_format="list")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        # One run per partition, with a nested run per fold.
        # Loss-comparison variants (tag `variant`) are extra runs, never registered.
        partition_runs = [
            r for r in finished if "mlflow.parentRunId" not in r.data.tags and "variant" not in r.data.tags
        ]
        assert sorted(r.data.params["arch"] for r in partition_runs) == sorted(ARCHS)
        for run in finished:
            assert run.data.tags["dagster_partition_key"].endswith(category)
        for run in partition_runs:
            assert "oof_macro_recall" in run.data.metrics
        versions = MlflowClient().search_model_versions(f"name='lss-{category}'")
        assert len(versions) == len(ARCHS)


def test_report_numbers_match_mlflow_and_aliases_point_at_stated_versions(pipeline):
    settings, _ = pipeline
    reports = settings.reports_dir
    for name in ("evaluation.md", "evaluation.html", "evaluation_metrics.csv", "champions.json"):
        assert (reports / name).exists(), name
    html = (reports / "evaluation.html").read_text()
    assert "data:image/png;base64," in html
    metrics = pl.read_parquet(reports / "evaluation_metrics.parquet")
    assert metrics.height == len(ARCHS) * 3
    client = MlflowClient()
    for row in metrics.iter_rows(named=True):
        run = client.get_run(row["mlflow_run_id"])
        assert run.data.metrics["oof_macro_recall"] == pytest.approx(row["oof_macro_recall"], abs=1e-6)
        assert row["test_macro_recall_lo"] <= row["test_macro_recall"] <= row["test_macro_recall_hi"]
    champions = json.loads((reports / "champions.json").read_text())
    markdown = (reports / "evaluation.md").read_text()
    for category, champ in champions.items():
        alias = client.get_model_version_by_alias(f"lss-{category}", "champion")
        assert str(alias.version) == champ["version"] and champ["decision"] == "crowned"
        rows = metrics.filter(pl.col("category") == category)
        crowned = rows.filter(pl.col("arch") == champ["arch"]).row(0, named=True)
        # Crowned on the out-of-fold rows; reported on the test split.
        assert crowned["oof_macro_recall"] == pytest.approx(rows["oof_macro_recall"].max())
        assert champ["macro_recall"] == pytest.approx(crowned["test_macro_recall"])
        assert f"lss-{category}" in markdown
    evaluation_runs = mlflow.search_runs(experiment_names=["lss-evaluation"], output_format="list")
    assert evaluation_runs and evaluation_runs[0].info.status == "FINISHED"


def test_summary_names_report_champions_and_uis(pipeline):
    settings, outcome = pipeline
    text = "\n".join(summary_lines(settings, outcome["seconds"]))
    assert "evaluation.html" in text and "champion:  lss-scs" in text and "make ui" in text


def test_demo_runs_are_recorded_in_the_ui_instance_and_leave_nothing_to_retrain(pipeline, monkeypatch):
    from dagster import DagsterInstance, evaluate_automation_conditions

    from lss_pipeline.core.label_watch import read_label_snapshot
    from lss_pipeline.core.predict.publish import test_study_ids
    from lss_pipeline.definitions import build_definitions
    from lss_pipeline.demo import plan
    from lss_pipeline.sensors import latest_observation

    settings, _ = pipeline
    monkeypatch.setenv("DAGSTER_HOME", str(settings.paths.dagster_home))  # deploy/dagster.yaml reads it
    with DagsterInstance.get() as instance:
        # One run per step of the demo's plan: ingest, crops, models, localisers, report, test studies.
        test_studies = [str(s) for s in test_study_ids(settings.paths)]
        assert len(instance.get_run_records()) == len(plan(ARCHS, test_studies=test_studies))
        # The demo observed the label files it built from: the daemon has nothing to retrain.
        files_hash = read_label_snapshot(settings.paths.label_files, settle_seconds=0).labels_hash
        assert latest_observation(instance)[1] == files_hash
        code_location = build_definitions(settings)
        first = evaluate_automation_conditions(defs=code_location, instance=instance)
        second = evaluate_automation_conditions(defs=code_location, instance=instance, cursor=first.cursor)
        assert first.total_requested == 0 and second.total_requested == 0


def test_retraining_adds_runs_and_versions_and_deletes_none(pipeline, ephemeral_instance):
    from dagster import materialize

    from lss_pipeline.definitions import ASSETS, default_resources

    settings, _ = pipeline
    client = MlflowClient()
    runs_before = {r.info.run_id for r in scs_runs()}
    versions_before = {v.version for v in client.search_model_versions("name='lss-scs'")}
    champion_before = client.get_model_version_by_alias("lss-scs", "champion").version
    result = materialize(
        ASSETS,
        selection=["trained_model"],
        partition_key="convnext|scs",
        instance=ephemeral_instance,
        resources=default_resources(),
        # compare_loss off: the demo profile's focal variant of convnext|scs would add its own runs.
        run_config={"ops": {"trained_model": {"config": {"epochs": 2, "compare_loss": False}}}},
    )
    assert result.success
    runs_after = {r.info.run_id for r in scs_runs()}
    versions_after = {v.version for v in client.search_model_versions("name='lss-scs'")}
    folds = json.loads(settings.paths.model_summary("convnext", "scs").read_text())["folds_trained"]
    assert runs_before < runs_after and len(runs_after) == len(runs_before) + 1 + len(folds)
    assert versions_before < versions_after
    # Only the report moves the champion alias.
    assert client.get_model_version_by_alias("lss-scs", "champion").version == champion_before


def test_failed_training_marks_its_mlflow_run_failed(pipeline, tmp_path, ephemeral_instance):
    import shutil

    import numpy as np
    from dagster import materialize

    from lss_pipeline.definitions import ASSETS
    from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking

    settings, _ = pipeline
    # A copy of the NFS crops whose array no longer matches the profile's crop size.
    data_dir = tmp_path / "data"
    crops_dir = data_dir / "crops" / "nfs"
    shutil.copytree(settings.crops_dir / "nfs", crops_dir)
    np.save(crops_dir / "crops.npy", np.zeros((3, 5, 8, 8), np.float16))
    result = materialize(
        ASSETS,
        selection=["trained_model"],
        partition_key="resnet|nfs",
        instance=ephemeral_instance,
        resources={
            "settings": LssSettings(data_dir=str(data_dir), raw_dir=str(settings.raw_dir)),
            "mlflow_tracking": MLflowTracking(tracking_uri=settings.mlflow_tracking_uri),
            "compute": ComputeDevice(device="cpu"),
        },
        raise_on_error=False,
    )
    assert not result.success
    failed = mlflow.search_runs(
        experiment_names=["lss-nfs"], filter_string="attributes.status = 'FAILED'", output_format="list"
    )
    assert len(failed) == 1 and failed[0].data.tags["dagster_partition_key"] == "resnet|nfs"
