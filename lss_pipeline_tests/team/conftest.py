"""Fixtures of the PostgreSQL tests: the live server, a team site (its own two databases) per test.

The server is the one LSS_PG_HOST / LSS_PG_PORT / LSS_PG_USER name (default 127.0.0.1:5432, user
postgres). Without one the tests skip, saying why; with LSS_REQUIRE_POSTGRES=1 (CI) they fail.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lss_pipeline.core.team.postgres import (
    PgConfig,
    drop_database,
    ensure_database,
)
from lss_pipeline_tests.team.site import TeamSite, build_prepared_data, live_postgres


@pytest.fixture(scope="session")
def pg_server() -> PgConfig:
    return live_postgres()


@pytest.fixture(autouse=True)
def restore_mlflow_uri() -> Iterator[None]:
    """Tests point MLflow at their own (then dropped) store; the next test finds the URIs as before."""
    import mlflow

    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)


@pytest.fixture
def team_site(pg_server: PgConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TeamSite]:
    """Two fresh databases (Dagster, MLflow), a data folder and DAGSTER_HOME with the team config;
    this process's environment points at them. Dropped afterwards, whatever the test did."""
    prefix = f"lss_test_{uuid.uuid4().hex[:12]}"
    config = replace(pg_server, dagster_db=f"{prefix}_dagster", mlflow_db=f"{prefix}_mlflow")
    site = TeamSite.create(config, tmp_path)
    try:
        for database in (config.dagster_db, config.mlflow_db):
            ensure_database(config, database)
        for name, value in site.env().items():
            monkeypatch.setenv(name, value)
        yield site
    finally:
        site.stop_servers()
        for database in (config.dagster_db, config.mlflow_db):
            drop_database(config, database)


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set with ingest and crops built (scs, nfs): what the training tests start from."""
    return build_prepared_data(tmp_path_factory.mktemp("team_prepared"))


@pytest.fixture
def site_with_crops(team_site: TeamSite, prepared_data: Path) -> TeamSite:
    """The team site with a copy of the prepared raw folder, processed tables and crops."""
    shutil.copytree(prepared_data, team_site.data_dir, dirs_exist_ok=True)
    team_site.init_schemas()
    return team_site


@pytest.fixture
def mlflow_server(team_site: TeamSite, monkeypatch: pytest.MonkeyPatch) -> str:
    """An MLflow tracking server on the site's PostgreSQL store, the one every run logs to."""
    url = team_site.start_mlflow_server()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    return url
