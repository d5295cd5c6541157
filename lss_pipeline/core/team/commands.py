"""`lss-pipeline team ...`: set up the team deployment's PostgreSQL schemas, move a lab's MLflow history.

lss-pipeline team env             print the LSS_PG_* variables (set or default) as shell exports
lss-pipeline team setup           create/upgrade Dagster's and MLflow's schemas (safe to repeat)
lss-pipeline team migrate-mlflow  copy the embedded sqlite MLflow store into the server's
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from lss_pipeline.core.paths import DEPLOY_DAGSTER_TEAM_YAML
from lss_pipeline.core.settings import Settings

# The database modules are imported by the commands that use them: `lss-pipeline synth` stays light.


def _say(message: str) -> None:
    print(message, flush=True)


def _cmd_env(args: argparse.Namespace) -> int:
    from lss_pipeline.core.team.postgres import PgConfig

    config = PgConfig.from_env()
    if args.mlflow_backend_uri:
        print(config.mlflow_url)
        return 0
    for name, value in config.env().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _cmd_setup(args: argparse.Namespace) -> int:
    from lss_pipeline.core.team.postgres import PgConfig
    from lss_pipeline.core.team.schema import GPU_POOL, setup_team_schemas

    settings = Settings.from_env()
    config = PgConfig.from_env()
    result = setup_team_schemas(config, DEPLOY_DAGSTER_TEAM_YAML, settings.paths.dagster_yaml, say=_say)
    for name, state in (("Dagster", result.dagster), ("MLflow", result.mlflow)):
        change = (
            "created"
            if state.revision_before is None
            else "already current"
            if state.revision_before == state.revision_after
            else f"upgraded from {state.revision_before}"
        )
        print(f"{name}: database {state.database} at revision {state.revision_after} ({change})")
    print(f"Dagster pool {GPU_POOL}: {result.gpu_pool_limit} training step(s) at a time (LSS_GPU_POOL_LIMIT)")
    print(f"Dagster instance config: {settings.paths.dagster_yaml} (from {DEPLOY_DAGSTER_TEAM_YAML.name})")
    return 0


def _cmd_migrate_mlflow(args: argparse.Namespace) -> int:
    from lss_pipeline.core.team.mlflow_move import move_mlflow_store
    from lss_pipeline.core.team.postgres import PgConfig, ensure_database
    from lss_pipeline.core.team.schema import tool_env

    settings = Settings.from_env()
    config = PgConfig.from_env()
    source = args.source or f"sqlite:///{settings.paths.mlflow_db}"
    ensure_database(config, config.mlflow_db)
    _say(f"copying MLflow runs and registered models: {source} -> {config.mlflow_db} at {config.where}")
    move = move_mlflow_store(
        source,
        config.mlflow_url,
        tool_env=tool_env(config, settings.paths.dagster_home),
        artifacts_from=settings.paths.mlflow_artifacts_dir if args.artifacts_to else None,
        artifacts_to=args.artifacts_to,
        say=_say,
    )
    print(
        f"copied {move.count('experiments')} experiments, {move.count('runs')} runs, "
        f"{move.count('metrics')} metric points, {move.count('registered_models')} registered models, "
        f"{move.count('model_versions')} model versions, {move.count('registered_model_aliases')} aliases"
        + (f"; artifacts now under {move.artifacts_copied_to}" if move.artifacts_copied_to else "")
    )
    return 0


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The command, with the failures a user can act on printed as one message (exit 1)."""

    def run(args: argparse.Namespace) -> int:
        from lss_pipeline.core.team.mlflow_move import MlflowMoveRefused
        from lss_pipeline.core.team.postgres import PostgresUnavailable
        from lss_pipeline.core.team.schema import SchemaSetupFailed

        try:
            return func(args)
        except (
            PostgresUnavailable,
            SchemaSetupFailed,
            MlflowMoveRefused,
            FileNotFoundError,
            ValueError,
        ) as exc:
            print(f"lss-pipeline team {args.team_command}: {exc}", file=sys.stderr)
            return 1

    return run


def add_team(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "team",
        help="team deployment: PostgreSQL schemas for Dagster and MLflow, moving MLflow history there",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    team = p.add_subparsers(dest="team_command", required=True)

    env = team.add_parser("env", help="print the LSS_PG_* variables (set or default) as shell exports")
    env.add_argument(
        "--mlflow-backend-uri", action="store_true", help="print only the MLflow server's backend store URI"
    )
    env.set_defaults(func=_run(_cmd_env))

    setup = team.add_parser(
        "setup", help="create or upgrade Dagster's and MLflow's schemas in PostgreSQL (safe to run again)"
    )
    setup.set_defaults(func=_run(_cmd_setup))

    move = team.add_parser(
        "migrate-mlflow",
        help="copy the embedded sqlite MLflow store (runs, metrics, models, aliases) into the server's",
    )
    move.add_argument(
        "--from",
        dest="source",
        default=None,
        help="sqlite:/// store to copy (default: $LSS_DATA_DIR/mlflow/mlflow.db)",
    )
    move.add_argument(
        "--artifacts-to",
        type=Path,
        default=None,
        help="the team's shared artifacts folder, when not $LSS_DATA_DIR/mlflow/artifacts: files are "
        "copied there and the runs' artifact locations rewritten",
    )
    move.set_defaults(func=_run(_cmd_migrate_mlflow))
