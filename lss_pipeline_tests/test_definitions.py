"""The code location: every asset and check of the assets package, the graph of the design, one
set of resources and jobs per deployment, no import cycle, no private Dagster API."""

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetChecksDefinition, AssetKey, AssetsDefinition, EnvVar, materialize

from lss_pipeline import assets as assets_package
from lss_pipeline.assets.sources import LABEL_FILES_KEY, label_files
from lss_pipeline.core.settings import DEPLOYMENTS, Settings
from lss_pipeline.definitions import build_definitions, defs
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking, resources_for

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lss_pipeline"

DESIGN_ASSETS = {
    "label_files",
    "dicom_metadata",
    "labels",
    "data_splits",
    "level_crops",
    "class_weights",
    "trained_model",
    "evaluation_report",
}


def assets_package_modules():
    return [
        importlib.import_module(f"{assets_package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(assets_package.__path__)
    ]


def test_every_asset_and_check_of_every_assets_module_is_in_the_code_location():
    graph = defs.resolve_asset_graph()
    asset_keys, check_keys = set(), set()
    for module in assets_package_modules():
        for value in vars(module).values():
            if isinstance(value, AssetChecksDefinition):
                check_keys |= set(value.check_keys)
            elif isinstance(value, AssetsDefinition):
                asset_keys |= set(value.keys)
    assert asset_keys and asset_keys <= graph.get_all_asset_keys()
    assert check_keys and check_keys <= graph.asset_check_keys
    assert DESIGN_ASSETS <= {key.to_user_string() for key in asset_keys}


def test_partitions():
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("level_crops")).partitions_def.get_partition_keys() == ["scs", "nfs", "sbs"]
    model_keys = graph.get(AssetKey("trained_model")).partitions_def.get_partition_keys()
    assert len(model_keys) == 9 and "convnext|scs" in model_keys


def test_dependencies_follow_the_design():
    graph = defs.resolve_asset_graph()
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert parents["label_files"] == set()
    assert parents["labels"] == {"label_files"}
    assert "label_files" in parents["dicom_metadata"]
    assert {"dicom_metadata", "labels", "data_splits"} <= parents["level_crops"]
    assert {"level_crops"} <= parents["class_weights"]
    assert {"level_crops", "class_weights"} <= parents["trained_model"]
    assert "trained_model" in parents["evaluation_report"]


def test_asset_checks_guard_the_joins():
    check_names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "coordinates_point_at_instances",
        "studies_have_required_series",
        "quarantine_share_below_bound",
        "folds_are_study_grouped_and_stratified",
    } <= check_names


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_each_deployment_has_the_three_resources(deployment):
    resources = resources_for(deployment)
    assert isinstance(resources["settings"], LssSettings)
    assert isinstance(resources["mlflow_tracking"], MLflowTracking)
    assert isinstance(resources["compute"], ComputeDevice)


def test_local_reads_nothing_it_cannot_default_and_k8s_takes_paths_and_server_from_the_pod():
    local = resources_for("local")
    assert local["settings"].data_dir == "" and local["mlflow_tracking"].tracking_uri == ""
    k8s = resources_for("k8s")
    assert k8s["settings"].data_dir == EnvVar("LSS_DATA_DIR")
    assert k8s["settings"].raw_dir == EnvVar("LSS_RAW_DIR")
    assert k8s["mlflow_tracking"].tracking_uri == EnvVar("MLFLOW_TRACKING_URI")
    assert k8s["compute"].device == "cuda"
    assert resources_for("team")["mlflow_tracking"].tracking_uri == EnvVar("MLFLOW_TRACKING_URI")


def test_k8s_settings_without_the_pod_environment_fail_naming_the_variable(monkeypatch):
    monkeypatch.delenv("LSS_DATA_DIR", raising=False)
    monkeypatch.setenv("LSS_RAW_DIR", "/data/raw")
    with pytest.raises(Exception, match="LSS_DATA_DIR"):
        materialize(
            [label_files],
            selection=[LABEL_FILES_KEY],
            resources={"settings": resources_for("k8s")["settings"]},
        )


def test_the_k8s_training_job_exists_only_in_the_k8s_deployment(tmp_path):
    def job_names(deployment):
        settings = Settings(data_dir=tmp_path, raw_dir=tmp_path / "raw", deployment=deployment)
        return {job.name for job in build_definitions(settings).jobs or []}

    assert "training_grid_k8s_job" in job_names("k8s")
    assert "training_grid_k8s_job" not in job_names("local") | job_names("team")
    assert {"ingest_job", "crops_job", "training_job", "report_job"} <= job_names("local")


def test_no_module_imports_the_definitions_back():
    # definitions imports everything; nothing it imports may import it (the old cycle).
    code = (
        "import sys, lss_pipeline.jobs, lss_pipeline.sensors, lss_pipeline.automation, "
        "lss_pipeline.resources, lss_pipeline.assets.sources; "
        "assert 'lss_pipeline.definitions' not in sys.modules"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    # Nor later, from inside a function: only the demo (which definitions never imports) may.
    importers = {
        path.relative_to(PACKAGE_DIR).as_posix()
        for path in PACKAGE_DIR.rglob("*.py")
        if re.search(r"(from|import)\s+lss_pipeline\.definitions", path.read_text())
    }
    assert importers <= {"demo.py"}


def test_no_private_dagster_api_in_the_package():
    private = re.compile(r"^\s*(from|import)\s+dagster\._|dagster\._core")
    offenders = [
        f"{path.relative_to(PACKAGE_DIR)}:{number}"
        for path in PACKAGE_DIR.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if private.search(line)
    ]
    assert offenders == []
