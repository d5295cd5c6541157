"""`lss-pipeline team setup`: Dagster's and MLflow's schemas created, then left alone on a second run."""

import pytest
import yaml

from lss_pipeline.cli import main
from lss_pipeline.core.paths import DEPLOY_DAGSTER_TEAM_YAML
from lss_pipeline.core.team.postgres import alembic_revision, table_names

# Each runs Dagster's and MLflow's migration tools (seconds apiece): after the fast tests.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_team_yaml_reads_the_server_from_the_environment_only():
    storage = yaml.safe_load(DEPLOY_DAGSTER_TEAM_YAML.read_text())["storage"]["postgres"]["postgres_db"]
    assert "password" not in storage
    assert {key: value["env"] for key, value in storage.items() if isinstance(value, dict)} == {
        "hostname": "LSS_PG_HOST",
        "port": "LSS_PG_PORT",
        "username": "LSS_PG_USER",
        "db_name": "LSS_PG_DAGSTER_DB",
    }


def test_setup_creates_both_schemas_and_a_second_run_changes_nothing(team_site, capsys, monkeypatch):
    config = team_site.config
    monkeypatch.setenv("LSS_GPU_POOL_LIMIT", "2")
    assert main(["team", "setup"]) == 0
    first = capsys.readouterr().out
    assert "(created)" in first
    dagster_revision = alembic_revision(config, config.dagster_db)
    mlflow_revision = alembic_revision(config, config.mlflow_db)
    assert dagster_revision and mlflow_revision
    assert {"runs", "event_logs", "jobs", "concurrency_slots"} <= table_names(config, config.dagster_db)
    assert {"experiments", "runs", "registered_models", "model_versions"} <= table_names(
        config, config.mlflow_db
    )
    assert team_site.paths.dagster_yaml.read_text() == DEPLOY_DAGSTER_TEAM_YAML.read_text()

    assert main(["team", "setup"]) == 0
    second = capsys.readouterr().out
    assert second.count("already current") == 2, second
    assert alembic_revision(config, config.dagster_db) == dagster_revision
    assert alembic_revision(config, config.mlflow_db) == mlflow_revision

    # The instance the UI and the daemon open is the PostgreSQL one.
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert instance.get_run_records() == []
        # The gpu pool exists before any run: two runs meeting it first cannot race to create it.
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count == 2


def test_setup_without_a_server_fails_with_the_reason(team_site, monkeypatch, capsys):
    from lss_pipeline_tests.team.site import free_port

    monkeypatch.setenv("LSS_PG_PORT", str(free_port()))
    assert main(["team", "setup"]) == 1
    assert "no PostgreSQL at" in capsys.readouterr().err
