"""A team site for one test: its PostgreSQL databases, data folder, DAGSTER_HOME, servers, runs.

Runs are launched as processes of their own (``materialize_one``), the way several people or the
daemon's run workers share one instance; the event log they leave is read back through Dagster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lss_pipeline.core.paths import DEPLOY_DAGSTER_TEAM_YAML
from lss_pipeline.core.settings import Settings
from lss_pipeline.core.team.postgres import PgConfig, connect
from lss_pipeline.core.team.schema import GPU_POOL

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 120.0
# Tiny trainings: one fold, one epoch, the demo profile's small models.
QUICK_TRAINING = {"epochs": 1, "folds": 1}
STUDIES = 12
CATEGORIES = ("scs", "nfs")


def live_postgres() -> PgConfig:
    """The server LSS_PG_* names, checked to answer and to let this user create databases.

    Without one the calling test skips, saying why; with LSS_REQUIRE_POSTGRES=1 (CI) it fails.
    """
    import pytest

    from lss_pipeline.core.team.postgres import PostgresUnavailable

    config = PgConfig.from_env()
    try:
        with connect(config) as conn, conn.cursor() as cur:
            cur.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
            row = cur.fetchone()
    except PostgresUnavailable as exc:
        why = f"PostgreSQL tests need a server: {exc}"
        if os.environ.get("LSS_REQUIRE_POSTGRES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    if not row or not row[0]:
        pytest.fail(f"PostgreSQL user {config.user} may not create databases; the tests make their own")
    return config


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_env() -> dict[str, str]:
    return {
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


@dataclass
class Process:
    """A child process in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def wait(self, timeout_s: float) -> int:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"{self.name} still running after {timeout_s:.0f} s:\n{self.log_tail()}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that outlived their parent (a run worker, a code server) share the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def result(self) -> dict[str, Any]:
        """The JSON line materialize_one printed last."""
        for line in reversed(self.log_path.read_text(errors="replace").splitlines()):
            if line.startswith("{") and '"run_id"' in line:
                return json.loads(line)
        raise AssertionError(f"{self.name} printed no result:\n{self.log_tail()}")


@dataclass
class TeamSite:
    config: PgConfig
    root: Path
    mlflow_uri: str = ""
    processes: list[Process] = field(default_factory=list)

    @classmethod
    def create(cls, config: PgConfig, root: Path) -> TeamSite:
        site = cls(config=config, root=root, mlflow_uri=config.mlflow_url)
        site.paths.dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEPLOY_DAGSTER_TEAM_YAML, site.paths.dagster_yaml)
        return site

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, raw_dir=self.data_dir / "raw", deployment="team")

    @property
    def paths(self):
        return self.settings.paths

    def env(self) -> dict[str, str]:
        """What every process of this site sees (the test process too, via monkeypatch)."""
        return {
            **quiet_env(),
            **self.config.env(),
            "LSS_DEPLOYMENT": "team",
            "LSS_DATA_DIR": str(self.data_dir),
            "LSS_RAW_DIR": str(self.settings.raw_dir),
            "DAGSTER_HOME": str(self.paths.dagster_home),
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
        }

    def process_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env())
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def start(self, name: str, args: Sequence[str], **extra_env: str) -> Process:
        log_path = self.root / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            list(args),
            env=self.process_env(**extra_env),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def launch(
        self, name: str, assets: Sequence[str], partition: str | None = None, config: dict | None = None
    ) -> Process:
        """Materialize ``assets`` (one partition) in a process of its own against this site's instance."""
        args = [sys.executable, "-m", "lss_pipeline_tests.team.materialize_one", "--assets", ",".join(assets)]
        if partition:
            args += ["--partition", partition]
        if config:
            args += ["--config", json.dumps(config)]
        return self.start(name, args)

    def start_mlflow_server(self) -> str:
        """An MLflow tracking server on this site's PostgreSQL store; returns its URL (also set here)."""
        port = free_port()
        self.paths.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
        server = self.start(
            "mlflow-server",
            [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", self.config.mlflow_url,
                "--artifacts-destination", str(self.paths.mlflow_artifacts_dir),
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            ],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_http(server, f"{url}/health")
        self.mlflow_uri = url
        return url

    def init_schemas(self) -> None:
        """Tables in both databases before several processes open them at once (what `team setup` does;
        done in-process here, which is quicker than its two command-line tools)."""
        from dagster import DagsterInstance
        from mlflow.tracking import MlflowClient

        with DagsterInstance.get() as instance:
            # What `team setup` does with `dagster instance concurrency set` (see core/team/schema.py).
            instance.event_log_storage.set_concurrency_slots(GPU_POOL, 1)
        MlflowClient(self.config.mlflow_url, self.config.mlflow_url).search_experiments()

    def dagster_cli(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "dagster", *args],
            env=self.process_env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"dagster {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def query(self, database: str, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with connect(self.config, database) as conn, conn.cursor() as cur:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall())

    def stop_servers(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def wait_http(process: Process, url: str, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited before serving {url}:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.5)
    raise TimeoutError(
        f"{process.name} did not serve {url} in {timeout_s:.0f} s ({last_error}):\n{process.log_tail()}"
    )


def step_intervals(instance, run_ids: Sequence[str], step_key: str) -> list[tuple[float, float, str]]:
    """(start, end, run id) of ``step_key`` in each run, from the event log, sorted by start."""
    from dagster import DagsterEventType

    intervals = []
    for run_id in run_ids:
        events = instance.all_logs(
            run_id,
            of_type={
                DagsterEventType.STEP_START,
                DagsterEventType.STEP_SUCCESS,
                DagsterEventType.STEP_FAILURE,
            },
        )
        starts = [
            e.timestamp
            for e in events
            if e.step_key == step_key and e.dagster_event.event_type_value == "STEP_START"
        ]
        ends = [
            e.timestamp
            for e in events
            if e.step_key == step_key and e.dagster_event.event_type_value != "STEP_START"
        ]
        assert len(starts) == 1 and len(ends) == 1, f"run {run_id}: {step_key} started {starts}, ended {ends}"
        intervals.append((starts[0], ends[0], run_id))
    return sorted(intervals)


def blocked_by_pool(instance, run_id: str, pool: str) -> bool:
    """Whether a step of the run waited for a slot of ``pool`` (Dagster logs it as an engine event)."""
    from dagster import DagsterEventType

    events = instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
    return any(f"blocked by limit for pool {pool}" in (e.dagster_event.message or "") for e in events)


def build_prepared_data(root: Path) -> Path:
    """Synthetic raw folder + ingest + crops of CATEGORIES under ``root`` (local, ephemeral instance)."""
    from dagster import AssetSelection, DagsterInstance, materialize

    from lss_pipeline.core.synth import generate_dataset
    from lss_pipeline.definitions import ASSET_CHECKS, ASSETS
    from lss_pipeline.demo import plan
    from lss_pipeline.resources import LssSettings, resources_for

    raw = root / "raw"
    generate_dataset(raw, n_studies=STUDIES, seed=3, rows=160, workers=2)
    resources = {**resources_for("local"), "settings": LssSettings(data_dir=str(root), raw_dir=str(raw))}
    with DagsterInstance.ephemeral() as instance:
        for names, partition in plan(archs=(), categories=CATEGORIES, localise=False):
            if "evaluation_report" in names:
                continue
            materialize(
                [*ASSETS, *ASSET_CHECKS],
                selection=AssetSelection.assets(*names),
                partition_key=partition,
                instance=instance,
                resources=resources,
                run_config={"ops": {"level_crops": {"config": {"workers": 1}}}} if partition else None,
            )
    return root
