"""Real-browser tests: servers on free loopback ports, headless Debian Chromium via Playwright.

Chromium comes from Debian's packages (scripts/install_chromium.sh); Playwright's own
browser download is never used. The tests skip, with the reason, only when Chromium is
missing and cannot be installed here.

Each UI is tested in two deployments: ``local`` (the embedded sqlite stores of
``make demo``) and ``team`` (Dagster's runs and MLflow's runs in PostgreSQL databases of their own,
made per module and dropped afterwards, on the server LSS_PG_* names; see core/team/postgres.py).
Without a PostgreSQL server the team tests skip, saying why; with LSS_REQUIRE_POSTGRES=1 they fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 120.0


def pytest_configure(config):
    config.addinivalue_line("markers", "ui: real-browser tests of the Dagster and MLflow UIs")


def chromium_path() -> Path:
    return Path(os.environ.get("LSS_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    path = chromium_path()
    if not path.exists():
        script = REPO_ROOT / "scripts" / "install_chromium.sh"
        result = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0 or not path.exists():
            why = (
                f"Chromium not at {path} and scripts/install_chromium.sh could not install it "
                f"(rc={result.returncode}): {(result.stderr or result.stdout).strip()[-400:]}"
            )
            # CI sets LSS_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
            if os.environ.get("LSS_REQUIRE_BROWSER") == "1":
                pytest.fail(why)
            pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def browser(chromium_executable):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_executable), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where screenshots go: $LSS_TEST_ARTIFACTS, default test-artifacts/ at the repo root."""
    root = Path(os.environ.get("LSS_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    path = root / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process in its own process group (so teardown reaches its children)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path):
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_http(self, url: str, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"{self.name} exited with {code} before serving {url}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.5)
        raise TimeoutError(
            f"{self.name} did not serve {url} within {timeout_s:.0f} s ({last_error}):\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Children that outlived their parent (daemon, code server) share the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


@contextlib.contextmanager
def running_server(
    name: str, cmd: list[str], env: dict[str, str], log_path: Path, ready_url: str, cwd: Path = REPO_ROOT
) -> Iterator[Server]:
    server = Server(name, cmd, env, log_path, cwd)
    try:
        server.wait_http(ready_url)
        yield server
    finally:
        server.stop()


def base_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NO_ALBUMENTATIONS_UPDATE="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        DAGSTER_DISABLE_TELEMETRY="1",
        # MLflow 3's background job runner (GenAI evaluation jobs): not used, and its
        # worker processes slow start-up and shutdown.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(overrides)
    return env


@contextlib.contextmanager
def team_databases(label: str) -> Iterator:
    """Two fresh PostgreSQL databases (Dagster, MLflow) as a ``PgConfig``; dropped afterwards."""
    from dataclasses import replace

    from lss_pipeline.core.team.postgres import drop_database, ensure_database
    from lss_pipeline_tests.team.site import live_postgres

    server = live_postgres()
    prefix = f"lss_ui_{label}_{uuid.uuid4().hex[:10]}"
    config = replace(server, dagster_db=f"{prefix}_dagster", mlflow_db=f"{prefix}_mlflow")
    try:
        for database in (config.dagster_db, config.mlflow_db):
            ensure_database(config, database)
        yield config
    finally:
        for database in (config.dagster_db, config.mlflow_db):
            drop_database(config, database)


def postgres_rows(config, database: str, query: str, params: tuple = ()) -> list[tuple]:
    """Rows of ``query`` in ``database``: what the UI shows must be what PostgreSQL holds."""
    from lss_pipeline.core.team.postgres import connect

    with connect(config, database) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


@pytest.fixture(scope="session")
def ui_helpers():
    """The helpers above for test modules (conftest is not importable by name)."""

    class Helpers:
        free_port = staticmethod(free_port)
        running_server = staticmethod(running_server)
        base_env = staticmethod(base_env)
        team_databases = staticmethod(team_databases)
        postgres_rows = staticmethod(postgres_rows)
        venv_bin = VENV_BIN
        repo_root = REPO_ROOT

    return Helpers
