"""Dagster UI in a real browser: the asset graph lists every asset; a materialization
launched from the UI succeeds and its metadata shows on the asset page."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
import yaml

pytestmark = [pytest.mark.ui, pytest.mark.timeout(900)]

# DESIGN.md "Asset graph": the names are the contract.
DESIGN_ASSETS = (
    "dicom_metadata",
    "labels",
    "data_splits",
    "level_crops",
    "class_weights",
    "trained_model",
    "evaluation_report",
)
RUN_TIMEOUT_S = 300.0
# The embedded deployment and the team one (PostgreSQL: marker postgres), as conftest.py describes.
DEPLOYMENTS = ("local", pytest.param("team", marks=pytest.mark.postgres))
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


RUNS_QUERY = """
query { runsOrError(limit: 10) { ... on Runs { results { runId status jobName assetSelection { path } } } } }
"""
LOCATION_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def dagster_env(request, tmp_path_factory, ui_helpers):
    """Temp LSS_DATA_DIR with a tiny synthetic RSNA set, temp DAGSTER_HOME with deploy/'s config:
    ``local``: deploy/dagster.yaml (sqlite in DAGSTER_HOME); ``team``: deploy/dagster-team.yaml on a
    PostgreSQL database of its own, MLflow on another (LSS_DEPLOYMENT=team)."""
    from lss_pipeline.core.synth import generate_dataset

    deployment = request.param
    root = tmp_path_factory.mktemp(f"dagster_ui_{deployment}")
    data_dir = root / "data"
    generate_dataset(data_dir / "raw", n_studies=8, seed=0, n_test_studies=0)
    home = root / "dagster_home"
    home.mkdir()
    config_file = "dagster-team.yaml" if deployment == "team" else "dagster.yaml"
    config = yaml.safe_load((ui_helpers.repo_root / "deploy" / config_file).read_text())
    # Only the webserver runs here (no daemon): the label sensor is RUNNING by default and
    # would start a full retraining on this data. Without a daemon nothing dequeues runs,
    # so the UI's launches go straight to the run launcher.
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {
        "DAGSTER_HOME": str(home),
        "LSS_DATA_DIR": str(data_dir),
        "LSS_RAW_DIR": str(data_dir / "raw"),
        "LSS_PROFILE": "demo",
        "LSS_DEPLOYMENT": deployment,
        "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
    }
    if deployment == "local":
        yield {"deployment": deployment, "root": root, "data_dir": data_dir, "home": home,
               "env": ui_helpers.base_env(**env), "pg": None}  # fmt: skip
        return
    with ui_helpers.team_databases("dagster") as pg:
        env.update(pg.env(), MLFLOW_TRACKING_URI=pg.mlflow_url)
        yield {"deployment": deployment, "root": root, "data_dir": data_dir, "home": home,
               "env": ui_helpers.base_env(**env), "pg": pg}  # fmt: skip


@pytest.fixture(scope="module")
def dagster_url(dagster_env, ui_helpers):
    port = ui_helpers.free_port()
    cmd = [
        str(ui_helpers.venv_bin / "dagster-webserver"),
        "-w",
        str(ui_helpers.repo_root / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with ui_helpers.running_server(
        "dagster-webserver",
        cmd,
        dagster_env["env"],
        dagster_env["root"] / "webserver.log",
        ready_url=f"{url}/server_info",
    ) as server:
        # The webserver answers before the code location has loaded.
        deadline = time.monotonic() + 120
        while True:
            entries = graphql(url, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                break
            assert time.monotonic() < deadline, f"code location not loaded: {entries}\n{server.log_tail()}"
            time.sleep(1)
        errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
        assert not errors, f"code location failed to load: {errors}"
        yield url


def test_asset_graph_lists_every_design_asset(page, dagster_url, dagster_env, artifacts_dir):
    page.goto(f"{dagster_url}/asset-groups")
    page.get_by_text("Global asset lineage").first.wait_for(state="visible")
    page.get_by_text("preprocess").first.wait_for(state="visible")
    # Groups start collapsed; expand them from the graph's context menu, as a user would.
    page.mouse.click(1100, 950, button="right")
    page.get_by_role("menuitem", name="Expand all groups").click()
    for name in DESIGN_ASSETS:
        page.get_by_text(name, exact=True).first.wait_for(state="visible")
    page.screenshot(path=artifacts_dir / f"dagster_asset_graph_{dagster_env['deployment']}.png")


def test_materialize_from_ui_succeeds_and_shows_metadata(
    page, dagster_url, dagster_env, artifacts_dir, ui_helpers
):
    page.goto(f"{dagster_url}/assets/dicom_metadata")
    page.get_by_text("Never materialized").first.wait_for(state="visible")
    page.get_by_role("button", name=re.compile(r"(^| )Materialize$")).click()

    # The launched run shows up in the run list; wait for it to finish.
    deadline = time.monotonic() + RUN_TIMEOUT_S
    run = None
    while time.monotonic() < deadline:
        runs = [
            r
            for r in graphql(dagster_url, RUNS_QUERY)["runsOrError"]["results"]
            if {tuple(a["path"]) for a in (r["assetSelection"] or [])} == {("dicom_metadata",)}
        ]
        run = runs[0] if runs else None
        if run and run["status"] in TERMINAL_STATUSES:
            break
        time.sleep(2)
    assert run is not None, "clicking Materialize launched no run"
    page.goto(f"{dagster_url}/runs/{run['runId']}")
    page.get_by_text(run["runId"].split("-")[0]).first.wait_for(state="visible")
    if run["status"] == "SUCCESS":
        # The run's event log, rendered: the last event of a successful run.
        page.get_by_text(re.compile(r"Finished execution of run")).first.wait_for(state="visible")
    page.screenshot(path=artifacts_dir / f"dagster_materialize_run_{dagster_env['deployment']}.png")
    assert run["status"] == "SUCCESS", f"run {run['runId']} ended {run['status']}"

    page.goto(f"{dagster_url}/assets/dicom_metadata")
    page.get_by_text("Latest materialization").first.wait_for(state="visible")
    # The asset's MaterializeResult metadata, as the UI renders it.
    for key in ("instances", "studies", "series", "quarantined", "instances_by_series_description"):
        page.get_by_text(key, exact=True).first.wait_for(state="visible")
    shot = artifacts_dir / f"dagster_asset_metadata_{dagster_env['deployment']}.png"
    page.screenshot(path=shot, full_page=True)
    body = page.inner_text("body")
    assert "Never materialized" not in body
    import polars as pl

    table = pl.read_parquet(dagster_env["data_dir"] / "processed" / "dicom_metadata.parquet")
    # The instance count shown is the one written (8 studies x 3 series x tens of slices).
    assert table.height > 100
    assert str(table.height) in body, f"instance count {table.height} not shown in the asset metadata"

    pg = dagster_env["pg"]
    if pg is not None:
        # Team deployment: the run the UI shows is the one PostgreSQL holds, with its events.
        stored = ui_helpers.postgres_rows(
            pg, pg.dagster_db, "SELECT status FROM runs WHERE run_id = %s", (run["runId"],)
        )
        assert stored == [("SUCCESS",)], f"run {run['runId']} in {pg.dagster_db}: {stored}"
        events = ui_helpers.postgres_rows(
            pg, pg.dagster_db, "SELECT count(*) FROM event_logs WHERE run_id = %s", (run["runId"],)
        )
        assert events[0][0] > 0, f"no events of run {run['runId']} in {pg.dagster_db}"
        # Nothing went to a sqlite store beside it.
        assert not list(dagster_env["home"].rglob("*.db")), list(dagster_env["home"].rglob("*.db"))
