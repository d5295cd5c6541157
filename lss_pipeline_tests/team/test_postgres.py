"""Where the server is (LSS_PG_*), and the database helpers against the live server."""

import pytest

from lss_pipeline.core.team.postgres import (
    ENV_DEFAULTS,
    PgConfig,
    PostgresUnavailable,
    alembic_revision,
    apply_env_defaults,
    connect,
    database_exists,
    drop_database,
    ensure_database,
    terminate_connections,
)


def test_defaults_and_urls_carry_no_password():
    config = PgConfig.from_env({"PGPASSWORD": "secret"})
    assert config.env() == ENV_DEFAULTS
    assert config.mlflow_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/lss_mlflow"
    assert "secret" not in config.dagster_url + config.mlflow_url + repr(config)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="LSS_PG_PORT"):
        PgConfig.from_env({"LSS_PG_PORT": "fivefour"})
    with pytest.raises(ValueError, match="LSS_PG_MLFLOW_DB"):
        PgConfig.from_env({"LSS_PG_MLFLOW_DB": "drop table; --"})
    with pytest.raises(ValueError, match="same database"):
        PgConfig.from_env({"LSS_PG_DAGSTER_DB": "lab", "LSS_PG_MLFLOW_DB": "lab"})


def test_apply_env_defaults_keeps_what_is_set():
    env = {"LSS_PG_HOST": "db.lab", "LSS_PG_PORT": ""}
    config = apply_env_defaults(env)
    assert env["LSS_PG_HOST"] == "db.lab" and env["LSS_PG_PORT"] == "5432"
    assert env["LSS_PG_DAGSTER_DB"] == "lss_dagster" and config.host == "db.lab"


def test_no_server_is_a_message_naming_where_we_looked():
    from lss_pipeline_tests.team.site import free_port

    config = PgConfig.from_env({"LSS_PG_PORT": str(free_port())})
    with pytest.raises(PostgresUnavailable, match=rf"127\.0\.0\.1:{config.port}.*LSS_PG_HOST"):
        with connect(config):
            pass


@pytest.mark.postgres
def test_databases_are_created_once_and_dropped_with_their_sessions(team_site):
    config = team_site.config
    name = f"{config.dagster_db}_extra"
    try:
        assert ensure_database(config, name) is True
        assert ensure_database(config, name) is False
        assert alembic_revision(config, name) is None
        with connect(config, name):
            assert terminate_connections(config, [name]) == 1
        with connect(config, name):
            drop_database(config, name)  # a session still open does not block the drop
        assert not database_exists(config, name)
    finally:
        drop_database(config, name)
