"""Create or upgrade the team deployment's two schemas with the tools Dagster and MLflow ship.

Dagster: ``dagster instance migrate`` on an instance whose dagster.yaml is the team one (it creates
the tables of a new database and runs Dagster's own migrations on an old one). MLflow: ``mlflow db
upgrade`` (creates the tables of an empty database, runs MLflow's Alembic migrations on an old one).
Both are no-ops on a current schema, so :func:`setup_team_schemas` is safe to run again, and a
PostgreSQL advisory lock keeps two copies of it started at once from racing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lss_pipeline.core.team.postgres import PgConfig, alembic_revision, connect, ensure_database

# The pool of the training steps (assets/train.py): one step at a time holds the accelerator.
GPU_POOL = "gpu"
# Any number of our own: two `setup`s at once take turns instead of both creating tables.
_SETUP_LOCK_KEY = 0x155_7EA3
_TOOL_TIMEOUT_SECONDS = 600

Say = Callable[[str], None]


class SchemaSetupFailed(RuntimeError):
    """A migration tool exited with an error; the message carries its last output lines."""


@dataclass(frozen=True)
class SchemaState:
    database: str
    created: bool
    revision_before: str | None
    revision_after: str | None


@dataclass(frozen=True)
class TeamSetup:
    dagster: SchemaState
    mlflow: SchemaState
    gpu_pool_limit: int


def tool_env(
    config: PgConfig, dagster_home: Path, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment the Dagster and MLflow tools run in: the caller's, with the server's LSS_PG_*."""
    env = dict(os.environ if environ is None else environ)
    env.update(config.env())
    env["DAGSTER_HOME"] = str(dagster_home)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def run_tool(args: list[str], env: Mapping[str, str], what: str) -> str:
    """Run ``python -m <tool> ...`` of this interpreter; its output, or :class:`SchemaSetupFailed`."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=_TOOL_TIMEOUT_SECONDS,
        check=False,
    )
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise SchemaSetupFailed(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return output


def install_instance_config(instance_yaml: Path, dagster_yaml: Path) -> None:
    """Copy the deployment's instance config to ``dagster_yaml`` in DAGSTER_HOME (where Dagster reads it)."""
    dagster_yaml.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(instance_yaml, dagster_yaml)


def migrate_dagster(config: PgConfig, dagster_home: Path, environ: Mapping[str, str] | None = None) -> str:
    """``dagster instance migrate`` against the instance in ``dagster_home`` (team config installed)."""
    return run_tool(
        ["dagster", "instance", "migrate"],
        tool_env(config, dagster_home, environ),
        f"dagster instance migrate (database {config.dagster_db} at {config.where})",
    )


def gpu_pool_limit(environ: Mapping[str, str] | None = None) -> int:
    """LSS_GPU_POOL_LIMIT (default 1): training steps that may hold accelerators at once."""
    value = ((os.environ if environ is None else environ).get("LSS_GPU_POOL_LIMIT") or "1").strip()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"LSS_GPU_POOL_LIMIT={value!r} is not a whole number of at least 1")
    return int(value)


def set_gpu_pool(
    config: PgConfig, dagster_home: Path, limit: int, environ: Mapping[str, str] | None = None
) -> None:
    """Store the `gpu` pool's limit in the instance before any run claims it.

    A pool first met by two runs at once is created by both; on PostgreSQL the loser's transaction
    aborts (Dagster catches the unique violation but keeps using the failed transaction) and its
    run fails. Creating the pool here, once, leaves runs nothing to race over.
    """
    run_tool(
        ["dagster", "instance", "concurrency", "set", GPU_POOL, str(limit)],
        tool_env(config, dagster_home, environ),
        f"dagster instance concurrency set {GPU_POOL} {limit}",
    )


def upgrade_mlflow(url: str, env: Mapping[str, str], what: str) -> str:
    """``mlflow db upgrade`` of the store at ``url`` (creates an empty one's tables)."""
    return run_tool(["mlflow", "db", "upgrade", url], env, f"mlflow db upgrade ({what})")


def setup_team_schemas(
    config: PgConfig,
    instance_yaml: Path,
    dagster_yaml: Path,
    *,
    environ: Mapping[str, str] | None = None,
    say: Say = lambda _message: None,
) -> TeamSetup:
    """Create both databases when missing and bring Dagster's and MLflow's schemas to this version.

    ``instance_yaml`` (deploy/dagster-team.yaml) is installed as ``dagster_yaml``, whose folder is
    the DAGSTER_HOME the migration runs in.
    """
    dagster_home = dagster_yaml.parent
    with connect(config) as lock_conn, lock_conn.cursor() as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
        try:
            created = {db: ensure_database(config, db) for db in (config.dagster_db, config.mlflow_db)}
            before = {db: alembic_revision(config, db) for db in created}

            install_instance_config(instance_yaml, dagster_yaml)
            say(f"Dagster: {config.dagster_db} at {config.where} (dagster instance migrate)")
            say(f"MLflow:  {config.mlflow_db} at {config.where} (mlflow db upgrade)")
            # Two databases, two tools: run them side by side.
            with ThreadPoolExecutor(max_workers=2) as pool:
                dagster = pool.submit(migrate_dagster, config, dagster_home, environ)
                mlflow = pool.submit(
                    upgrade_mlflow,
                    config.mlflow_url,
                    tool_env(config, dagster_home, environ),
                    f"database {config.mlflow_db}",
                )
                dagster.result()
                mlflow.result()
            limit = gpu_pool_limit(environ)
            say(f"Dagster: pool {GPU_POOL} limited to {limit} (LSS_GPU_POOL_LIMIT)")
            set_gpu_pool(config, dagster_home, limit, environ)
            after = {db: alembic_revision(config, db) for db in created}
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))

    def state(db: str) -> SchemaState:
        return SchemaState(db, created[db], before[db], after[db])

    return TeamSetup(dagster=state(config.dagster_db), mlflow=state(config.mlflow_db), gpu_pool_limit=limit)
