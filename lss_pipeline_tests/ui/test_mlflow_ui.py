"""MLflow UI in a real browser: experiment page lists runs with params and metrics; compare view opens."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(600)]

EXPERIMENT = "lss-scs"
RUNS = {
    "convnext-scs-fold0": {
        "params": {"arch": "convnext", "timm_name": "convnext_atto", "loss": "weighted_focal", "epochs": "2"},
        "metrics": {"val_macro_recall": [0.41, 0.55], "val_loss": [1.02, 0.87]},
    },
    "resnet-scs-fold0": {
        "params": {"arch": "resnet", "timm_name": "resnet18", "loss": "weighted_ce", "epochs": "2"},
        "metrics": {"val_macro_recall": [0.37, 0.45], "val_loss": [1.10, 0.95]},
    },
}


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A sqlite store with two small runs logged through the MLflow client."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    artifacts.mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(artifacts / EXPERIMENT).as_uri())
    run_ids = {}
    for name, spec in RUNS.items():
        run = client.create_run(experiment_id, run_name=name)
        for key, value in spec["params"].items():
            client.log_param(run.info.run_id, key, value)
        for key, values in spec["metrics"].items():
            for step, value in enumerate(values):
                client.log_metric(run.info.run_id, key, value, step=step)
        client.set_terminated(run.info.run_id, "FINISHED")
        run_ids[name] = run.info.run_id
    return {"root": root, "uri": uri, "artifacts": artifacts, "experiment_id": experiment_id, "run_ids": run_ids}


@pytest.fixture(scope="module")
def mlflow_url(mlflow_store, ui_helpers, tmp_path_factory):
    port = ui_helpers.free_port()
    logs = tmp_path_factory.mktemp("mlflow_logs")
    cmd = [
        str(ui_helpers.venv_bin / "mlflow"), "server",
        "--backend-store-uri", mlflow_store["uri"],
        "--artifacts-destination", str(mlflow_store["artifacts"]),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]
    url = f"http://127.0.0.1:{port}"
    with ui_helpers.running_server(
        "mlflow server", cmd, ui_helpers.base_env(), logs / "mlflow.log", ready_url=f"{url}/health"
    ):
        yield url


def close_assistant_panel(page) -> None:
    """Close MLflow 3's assistant side panel if it is open; it takes a third of the width."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def test_experiment_page_lists_runs_with_params_and_metrics(page, mlflow_url, mlflow_store, artifacts_dir):
    experiment_id = mlflow_store["experiment_id"]
    page.goto(f"{mlflow_url}/#/experiments/{experiment_id}/runs")
    for name in RUNS:
        page.get_by_text(name, exact=True).first.wait_for(state="visible")
    close_assistant_panel(page)
    # MLflow 3 hides metric and param columns by default: add them the way a user does,
    # through the column picker at the right end of the runs table.
    page.locator("button", has_text="Show more columns").first.click()
    for group in ("Metrics", "Parameters"):
        page.get_by_text(re.compile(rf"^{group} \(\d+\)$")).first.click()
    page.keyboard.press("Escape")
    page.get_by_text("weighted_focal", exact=True).first.wait_for(state="visible")
    page.screenshot(path=artifacts_dir / "mlflow_experiment_runs.png", full_page=True)
    body = page.inner_text("body")
    assert EXPERIMENT in body
    # The runs table shows the logged params and the last value of each metric.
    for spec in RUNS.values():
        for key in ("arch", "loss"):
            assert spec["params"][key] in body, f"param {key}={spec['params'][key]} not on the experiment page"
        assert str(spec["metrics"]["val_macro_recall"][-1]) in body
    for column in ("val_macro_recall", "val_loss", "arch", "loss"):
        assert column in body, f"column {column} not on the experiment page"


def test_compare_view_of_two_runs_opens(page, mlflow_url, mlflow_store, artifacts_dir):
    run_ids = list(mlflow_store["run_ids"].values())
    query = urllib.parse.urlencode(
        {"runs": json.dumps(run_ids), "experiments": json.dumps([mlflow_store["experiment_id"]])}
    )
    page.goto(f"{mlflow_url}/#/compare-runs?{query}")
    page.get_by_text(re.compile(r"Comparing 2 Runs", re.I)).first.wait_for(state="visible")
    close_assistant_panel(page)
    for name in RUNS:
        page.get_by_text(name).first.wait_for(state="visible")
    # The parallel-coordinates plot of the two runs renders (plotly, lazily loaded).
    page.locator(".js-plotly-plot").first.wait_for(state="visible")
    page.screenshot(path=artifacts_dir / "mlflow_compare_runs.png")
    # The page scrolls inside its own container: bring the side-by-side tables into view.
    page.get_by_text("val_loss", exact=True).last.scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / "mlflow_compare_runs_tables.png")
    body = page.inner_text("body")
    # Parameters and metrics sections with both runs' values side by side.
    for spec in RUNS.values():
        assert spec["params"]["timm_name"] in body
        assert str(spec["metrics"]["val_macro_recall"][-1]) in body
    assert "val_macro_recall" in body and "val_loss" in body
