"""Where the team deployment's PostgreSQL server is, read from the environment.

LSS_PG_HOST        default 127.0.0.1
LSS_PG_PORT        default 5432
LSS_PG_USER        default postgres
LSS_PG_DAGSTER_DB  Dagster's runs, event logs and automation state (default lss_dagster)
LSS_PG_MLFLOW_DB   MLflow's tracking and model registry store (default lss_mlflow)

The password is never in a file of ours: libpq reads ``PGPASSWORD`` or ``~/.pgpass`` itself, for
Dagster, MLflow and these helpers alike. Dagster and MLflow each keep their schema version in a
table named ``alembic_version``, so they need two databases, not one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the installed driver is psycopg2.
SQLALCHEMY_SCHEME = "postgresql+psycopg2"
# Maintenance database to connect to when creating or dropping the two above.
ADMIN_DB = "postgres"
CONNECT_TIMEOUT_SECONDS = 5

ENV_DEFAULTS: dict[str, str] = {
    "LSS_PG_HOST": "127.0.0.1",
    "LSS_PG_PORT": "5432",
    "LSS_PG_USER": "postgres",
    "LSS_PG_DAGSTER_DB": "lss_dagster",
    "LSS_PG_MLFLOW_DB": "lss_mlflow",
}
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """The server did not answer, or refused us; the message says where we looked."""


@dataclass(frozen=True)
class PgConfig:
    host: str
    port: int
    user: str
    dagster_db: str
    mlflow_db: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PgConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return (env.get(name) or "").strip() or ENV_DEFAULTS[name]

        port = get("LSS_PG_PORT")
        if not port.isdigit():
            raise ValueError(f"LSS_PG_PORT={port!r} is not a port number")
        for name in ("LSS_PG_DAGSTER_DB", "LSS_PG_MLFLOW_DB"):
            if not _DB_NAME.match(get(name)):
                raise ValueError(f"{name}={get(name)!r}: use letters, digits and _ (at most 63)")
        if get("LSS_PG_DAGSTER_DB") == get("LSS_PG_MLFLOW_DB"):
            raise ValueError(
                "LSS_PG_DAGSTER_DB and LSS_PG_MLFLOW_DB name the same database; Dagster and MLflow "
                "each need their own (both keep a table called alembic_version)"
            )
        return cls(
            host=get("LSS_PG_HOST"),
            port=int(port),
            user=get("LSS_PG_USER"),
            dagster_db=get("LSS_PG_DAGSTER_DB"),
            mlflow_db=get("LSS_PG_MLFLOW_DB"),
        )

    @property
    def where(self) -> str:
        """``user@host:port``: for messages (no password)."""
        return f"{self.user}@{self.host}:{self.port}"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database``, without a password (libpq finds it)."""
        return f"{SQLALCHEMY_SCHEME}://{quote(self.user, safe='')}@{self.host}:{self.port}/{database}"

    @property
    def mlflow_url(self) -> str:
        """The backend store URI of the MLflow server (``mlflow server --backend-store-uri``)."""
        return self.url(self.mlflow_db)

    @property
    def dagster_url(self) -> str:
        return self.url(self.dagster_db)

    def env(self) -> dict[str, str]:
        """The LSS_PG_* variables that name this server (what deploy/dagster-team.yaml reads)."""
        return {
            "LSS_PG_HOST": self.host,
            "LSS_PG_PORT": str(self.port),
            "LSS_PG_USER": self.user,
            "LSS_PG_DAGSTER_DB": self.dagster_db,
            "LSS_PG_MLFLOW_DB": self.mlflow_db,
        }


def apply_env_defaults(environ: dict[str, str] | os._Environ[str] | None = None) -> PgConfig:
    """Set the unset LSS_PG_* variables to their defaults (Dagster's ``env:`` has no default)."""
    env = os.environ if environ is None else environ
    config = PgConfig.from_env(env)
    for name, value in config.env().items():
        if not (env.get(name) or "").strip():
            env[name] = value
    return config


@contextmanager
def connect(config: PgConfig, database: str = ADMIN_DB, autocommit: bool = True) -> Iterator[Any]:
    """A psycopg2 connection; :class:`PostgresUnavailable` naming the server when none answers."""
    try:
        conn = psycopg2.connect(
            host=config.host,
            port=config.port,
            user=config.user,
            dbname=database,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="lss-pipeline",
        )
    except psycopg2.OperationalError as exc:
        detail = " ".join(str(exc).split())
        raise PostgresUnavailable(
            f"no PostgreSQL at {config.where} (database {database}): {detail}. "
            "Set LSS_PG_HOST / LSS_PG_PORT / LSS_PG_USER (and PGPASSWORD or ~/.pgpass if the server "
            "asks for a password)."
        ) from exc
    conn.autocommit = autocommit
    try:
        yield conn
    finally:
        conn.close()


def database_exists(config: PgConfig, database: str) -> bool:
    with connect(config) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        return cur.fetchone() is not None


def ensure_database(config: PgConfig, database: str) -> bool:
    """Create ``database`` unless it exists; True when it was created."""
    if database_exists(config, database):
        return False
    with connect(config) as conn, conn.cursor() as cur:
        try:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg2.errors.DuplicateDatabase:
            return False  # created by someone else in the meantime
    return True


def drop_database(config: PgConfig, database: str) -> None:
    """Drop ``database`` and end the sessions still connected to it."""
    with connect(config) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def terminate_connections(config: PgConfig, databases: list[str]) -> int:
    """End every other session on ``databases`` (what a server restart does to clients)."""
    with connect(config) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
            (databases,),
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


def table_names(config: PgConfig, database: str) -> set[str]:
    with connect(config, database) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {row[0] for row in cur.fetchall()}


def alembic_revision(config: PgConfig, database: str) -> str | None:
    """The schema revision Dagster or MLflow stamped into ``database`` (None before set-up)."""
    if "alembic_version" not in table_names(config, database):
        return None
    with connect(config, database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        row = cur.fetchone()
    return row[0] if row else None
