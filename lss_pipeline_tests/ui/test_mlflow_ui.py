"""MLflow UI in a real browser: experiment page lists runs with params and metrics; compare view opens."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(600)]

EXPERIMENT = "lss-scs"
# Two small real training runs (core train_fold + the MLflow helpers the asset uses).
RUNS = {
    "convnext-scs": {"arch": "convnext", "timm_name": "convnext_atto", "loss": "focal"},
    "resnet-scs": {"arch": "resnet", "timm_name": "resnet18", "loss": "weighted_ce"},
}


@pytest.fixture(scope="module", params=("local", pytest.param("team", marks=pytest.mark.postgres)))
def mlflow_store(request, tmp_path_factory, ui_helpers):
    """A store holding two tiny training runs, logged as the trained_model asset logs them:
    ``local`` the demo's sqlite file, ``team`` a PostgreSQL database of its own (dropped afterwards)."""
    import mlflow

    tracking_uri, registry_uri = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        if request.param == "local":
            yield _store_with_runs(tmp_path_factory, "local", None)
        else:
            with ui_helpers.team_databases("mlflow") as pg:
                yield _store_with_runs(tmp_path_factory, "team", pg)
    finally:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri)


def _store_with_runs(tmp_path_factory, deployment: str, pg) -> dict:
    from lss_pipeline.core.train import tracking
    from lss_pipeline.core.train.config import TrainConfig
    from lss_pipeline.core.train.fold import plan_fold
    from lss_pipeline.core.train.loop import train_fold
    from lss_pipeline_tests.core.train.synthetic_crops import write_synthetic_crops

    root = tmp_path_factory.mktemp(f"mlflow_{deployment}")
    uri = pg.mlflow_url if pg is not None else f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    tracking.configure_mlflow(uri, artifacts)
    crops, index = write_synthetic_crops(tmp_path_factory.mktemp("crops"), n=120)
    run_ids, recalls = {}, {}
    for name, spec in RUNS.items():
        config = TrainConfig(
            arch=spec["arch"],
            timm_name=spec["timm_name"],
            category="scs",
            crop_px=32,
            loss=spec["loss"],
            epochs=2,
            batch_size=32,
            device="cpu",
            val_fold=0,
        )
        with tracking.start_run(EXPERIMENT, run_name=name, tags={"arch": spec["arch"]}) as run:
            plan = plan_fold(config, crops, index, [1.0, 2.0, 4.0], tmp_path_factory.mktemp(name))
            result = train_fold(plan, tracker=run)
        run_ids[name] = run.run_id
        recalls[name] = result.best_val_macro_recall
    return {
        "deployment": deployment,
        "pg": pg,
        "root": root,
        "uri": uri,
        "artifacts": artifacts,
        "experiment_id": tracking.ensure_experiment(EXPERIMENT),
        "run_ids": run_ids,
        "recalls": recalls,
    }


@pytest.fixture(scope="module")
def mlflow_url(mlflow_store, ui_helpers, tmp_path_factory):
    port = ui_helpers.free_port()
    logs = tmp_path_factory.mktemp("mlflow_logs")
    cmd = [
        str(ui_helpers.venv_bin / "mlflow"),
        "server",
        "--backend-store-uri",
        mlflow_store["uri"],
        "--artifacts-destination",
        str(mlflow_store["artifacts"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
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


def test_experiment_page_lists_runs_with_params_and_metrics(
    page, mlflow_url, mlflow_store, artifacts_dir, ui_helpers
):
    experiment_id = mlflow_store["experiment_id"]
    page.goto(f"{mlflow_url}/#/experiments/{experiment_id}/runs")
    for name in RUNS:
        page.get_by_text(name, exact=True).first.wait_for(state="visible")
    close_assistant_panel(page)
    # MLflow 3 hides metric columns by default: add them the way a user does, through the
    # column picker at the right end of the runs table.
    page.locator("button", has_text="Show more columns").first.click()
    page.get_by_text(re.compile(r"^Metrics \(\d+\)$")).first.click()
    page.keyboard.press("Escape")
    page.get_by_text("best_val_macro_recall").first.wait_for(state="visible")
    shot = artifacts_dir / f"mlflow_experiment_runs_{mlflow_store['deployment']}.png"
    page.screenshot(path=shot, full_page=True)
    body = page.inner_text("body")
    assert EXPERIMENT in body and "2 matching runs" in body
    # Each run's best validation macro recall is in the table, as MLflow logged it.
    for name, recall in mlflow_store["recalls"].items():
        assert str(recall)[:6] in body, f"{name}: best_val_macro_recall {recall} not on the experiment page"

    # A run's own page lists every parameter and metric of the training run.
    page.get_by_text("convnext-scs", exact=True).first.click()
    page.get_by_text("convnext_atto").first.wait_for(state="visible")
    close_assistant_panel(page)
    page.screenshot(path=artifacts_dir / f"mlflow_run_page_{mlflow_store['deployment']}.png", full_page=True)
    run_page = page.inner_text("body")
    for expected in ("focal", "convnext_atto", "weight_scheme", "val_macro_recall", "train_loss"):
        assert expected in run_page, f"{expected} not on the run page"

    pg = mlflow_store["pg"]
    if pg is not None:
        # Team deployment: the runs on the page are the ones the PostgreSQL store holds.
        stored = ui_helpers.postgres_rows(
            pg, pg.mlflow_db, "SELECT name, status FROM runs WHERE experiment_id = %s ORDER BY name",
            (int(experiment_id),),
        )  # fmt: skip
        assert stored == [(name, "FINISHED") for name in sorted(RUNS)], stored


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
    page.screenshot(path=artifacts_dir / f"mlflow_compare_runs_{mlflow_store['deployment']}.png")
    # The page scrolls inside its own container: bring the side-by-side tables into view.
    page.get_by_text("val_loss", exact=True).last.scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / f"mlflow_compare_runs_tables_{mlflow_store['deployment']}.png")
    body = page.inner_text("body")
    # Parameters and metrics sections with both runs' values side by side.
    for spec in RUNS.values():
        assert spec["timm_name"] in body
    assert "val_macro_recall" in body and "val_loss" in body
