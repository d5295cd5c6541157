"""Carry a lab's MLflow history from the embedded sqlite store to the team's PostgreSQL store.

MLflow has no command that copies one backend store into another, and re-logging through the
client would give every run, logged model and model version a new id, breaking what our own files
point at (run ids in the report tables and training state, versions in champions.json). Both stores
are MLflow's own SQLAlchemy schema, so the copy is row by row, table by table, ids kept:

1. a temporary copy of the sqlite file is brought to this MLflow's schema (``mlflow db upgrade``;
   the lab's file itself is never written), and so is the server's store;
2. every table is copied in foreign-key order in one transaction; rows already there (MLflow's
   ``Default`` experiment, a previous copy) are left alone, so running it again adds nothing;
3. PostgreSQL's id sequences are moved past the copied ids;
4. optionally the artifacts folder moves too: files copied to the shared folder and the
   ``file://`` locations that pointed into the old folder rewritten.

An experiment or registered model of the same name but another id already on the server stops
the copy before anything is written (merging two histories is a decision for a person).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from lss_pipeline.core.team.schema import upgrade_mlflow

_SKIPPED_TABLES = {"alembic_version"}
_CHUNK_ROWS = 5000

Say = Callable[[str], None]


class MlflowMoveRefused(RuntimeError):
    """The copy would merge two different histories, or the stores are at different schema versions."""


@dataclass
class MlflowMove:
    rows_copied: dict[str, int] = field(default_factory=dict)
    rows_already_there: dict[str, int] = field(default_factory=dict)
    artifacts_copied_to: Path | None = None

    def count(self, table: str) -> int:
        return self.rows_copied.get(table, 0)


def sqlite_path(uri: str) -> Path:
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"{uri!r} is not a sqlite:/// MLflow store")
    return Path(uri.removeprefix("sqlite:///"))


def move_mlflow_store(
    source_uri: str,
    dest_url: str,
    *,
    tool_env: Mapping[str, str],
    artifacts_from: Path | None = None,
    artifacts_to: Path | None = None,
    say: Say = lambda _message: None,
) -> MlflowMove:
    """Copy every row of the sqlite store ``source_uri`` into the PostgreSQL store ``dest_url``.

    ``artifacts_from``/``artifacts_to``: the embedded store's artifacts folder and the team's shared
    one; when both are given and differ, files are copied and locations rewritten.
    """
    source_file = sqlite_path(source_uri)
    if not source_file.is_file():
        raise FileNotFoundError(f"no MLflow store at {source_file}")
    rewrite = _artifact_rewrite(artifacts_from, artifacts_to)
    with tempfile.TemporaryDirectory(prefix="lss-mlflow-move-") as tmp:
        snapshot = Path(tmp) / source_file.name
        _snapshot_sqlite(source_file, snapshot)
        say(f"schema: bringing a copy of {source_file} and the server's store to this MLflow's version")
        upgrade_mlflow(f"sqlite:///{snapshot}", tool_env, f"copy of {source_file}")
        upgrade_mlflow(dest_url, tool_env, "the server's store")
        source = sa.create_engine(f"sqlite:///{snapshot}")
        dest = sa.create_engine(dest_url)
        try:
            _check_same_revision(source, dest)
            with source.connect() as src, dest.connect() as dst:
                _refuse_name_clashes(src, dst)
            copied_to = None
            if rewrite is not None and artifacts_from is not None and artifacts_to is not None:
                _copy_artifacts(artifacts_from, artifacts_to, say)
                copied_to = artifacts_to
            move = _copy_tables(source, dest, rewrite, say)
            move.artifacts_copied_to = copied_to
        finally:
            source.dispose()
            dest.dispose()
    return move


def _copy_artifacts(artifacts_from: Path, artifacts_to: Path, say: Say) -> None:
    """Files before rows: a location is rewritten only once the files are where it points."""
    if artifacts_from.is_dir():
        say(f"artifacts: {artifacts_from} -> {artifacts_to}")
        shutil.copytree(artifacts_from, artifacts_to, dirs_exist_ok=True)
    else:
        say(f"artifacts: no folder at {artifacts_from}, nothing to copy")


def _snapshot_sqlite(source_file: Path, snapshot: Path) -> None:
    """A consistent copy even while a training writes to the store (sqlite's online backup)."""
    import sqlite3

    src, dst = sqlite3.connect(source_file), sqlite3.connect(snapshot)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _artifact_rewrite(artifacts_from: Path | None, artifacts_to: Path | None) -> Callable[[Any], Any] | None:
    if artifacts_from is None or artifacts_to is None:
        return None
    old, new = artifacts_from.resolve(), artifacts_to.resolve()
    if old == new:
        return None
    prefixes = [(old.as_uri(), new.as_uri()), (str(old), str(new))]

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            for before, after in prefixes:
                if value == before or value.startswith(before + "/"):
                    return after + value[len(before) :]
        return value

    return rewrite


def _check_same_revision(source: sa.Engine, dest: sa.Engine) -> None:
    def revision(engine: sa.Engine) -> str | None:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    if revision(source) != revision(dest):
        raise MlflowMoveRefused(
            f"schema versions differ after upgrade: sqlite {revision(source)}, server {revision(dest)}; "
            "run this with the MLflow version the server runs"
        )


def _copy_tables(
    source: sa.Engine, dest: sa.Engine, rewrite: Callable[[Any], Any] | None, say: Say
) -> MlflowMove:
    source_meta, dest_meta = sa.MetaData(), sa.MetaData()
    source_meta.reflect(source)
    dest_meta.reflect(dest)
    move = MlflowMove()
    with source.connect() as src, dest.begin() as dst:
        _refuse_name_clashes(src, dst)
        for table in dest_meta.sorted_tables:
            if table.name in _SKIPPED_TABLES or table.name not in source_meta.tables:
                continue
            source_table = source_meta.tables[table.name]
            columns = [c.name for c in table.columns if c.name in source_table.columns]
            before = dst.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            total = 0
            for rows in _chunks(src, source_table, columns):
                total += len(rows)
                values = [_dest_row(table, row, rewrite) for row in rows]
                dst.execute(postgresql.insert(table).on_conflict_do_nothing(), values)
            after = dst.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            if total:
                move.rows_copied[table.name] = after - before
                move.rows_already_there[table.name] = total - (after - before)
                say(f"  {table.name}: {after - before} rows copied, {total - (after - before)} already there")
        _advance_sequences(dst, dest_meta)
    return move


def _refuse_name_clashes(src: sa.Connection, dst: sa.Connection) -> None:
    """Same name, different id: two histories that a row copy would mix up."""

    def experiments(conn: sa.Connection) -> set[tuple[int, str]]:
        return {
            (int(i), name) for i, name in conn.execute(sa.text("SELECT experiment_id, name FROM experiments"))
        }

    ours, there = experiments(src), experiments(dst)
    for experiment_id, name in sorted(ours - there):
        clash = [(i, n) for i, n in there if i == experiment_id or n == name]
        if clash:
            raise MlflowMoveRefused(
                f"the server already has experiment {clash[0][1]!r} with id {clash[0][0]}; this store has "
                f"{name!r} with id {experiment_id}. Copy into a new, empty MLflow database "
                "(LSS_PG_MLFLOW_DB) instead."
            )

    def versions(conn: sa.Connection) -> dict[tuple[str, int], str | None]:
        rows = conn.execute(sa.text("SELECT name, version, run_id FROM model_versions")).all()
        return {(name, int(version)): run_id for name, version, run_id in rows}

    our_versions, their_versions = versions(src), versions(dst)
    our_models = {name for name, _ in our_versions}
    for (name, version), run_id in their_versions.items():
        if name in our_models and our_versions.get((name, version), "<none>") != run_id:
            raise MlflowMoveRefused(
                f"the server already has version {version} of model {name!r}, which this store does not "
                "know. Copy into a new, empty MLflow database (LSS_PG_MLFLOW_DB) instead."
            )


def _chunks(conn: sa.Connection, table: sa.Table, columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    result = conn.execute(sa.select(*(table.c[name] for name in columns)))
    while rows := result.mappings().fetchmany(_CHUNK_ROWS):
        yield [dict(row) for row in rows]


def _dest_row(table: sa.Table, row: dict[str, Any], rewrite: Callable[[Any], Any] | None) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if value is not None and isinstance(table.c[name].type, sa.Boolean):
            value = bool(value)  # sqlite keeps 0/1
        out[name] = rewrite(value) if rewrite is not None else value
    return out


def _advance_sequences(dst: sa.Connection, meta: sa.MetaData) -> None:
    """Next ids handed out must not collide with the copied ones."""
    for table in meta.sorted_tables:
        for column in table.primary_key.columns:
            if not isinstance(column.type, sa.Integer):
                continue
            sequence = dst.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
            ).scalar()
            if sequence:
                next_id = f'COALESCE((SELECT max("{column.name}") FROM "{table.name}"), 0) + 1'
                dst.execute(sa.text(f"SELECT setval(:s, {next_id}, false)"), {"s": sequence})
