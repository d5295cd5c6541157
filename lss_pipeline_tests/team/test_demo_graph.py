"""The demo graph end to end in the team deployment: every run in the PostgreSQL instance, every
training in the MLflow server's PostgreSQL store, nothing in the embedded sqlite files."""

import json
import re

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lss_pipeline.core.synth import generate_dataset
from lss_pipeline.demo import plan, run_demo
from lss_pipeline_tests.team.site import QUICK_TRAINING, STUDIES

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# One category keeps it short; every asset of the graph is still built.
CATEGORIES = ("scs",)
ARCHS = ("resnet",)


def test_demo_graph_on_postgres(team_site, mlflow_server):
    site = team_site
    generate_dataset(site.settings.raw_dir, n_studies=STUDIES, seed=3, rows=160, workers=2)
    said: list[str] = []
    run_demo(
        site.settings,
        archs=ARCHS,
        categories=CATEGORIES,
        run_config={"trained_model": QUICK_TRAINING, "level_crops": {"workers": 1}},
        say=said.append,
    )
    # "[k/N] assets [partition] …": one Dagster run per step.
    n_steps = {int(m.group(1)) for line in said if (m := re.match(r"\[\d+/(\d+)\]", line))}
    assert len(n_steps) == 1, said

    # Dagster: the runs and their events are rows of the site's PostgreSQL database.
    dagster_db = site.config.dagster_db
    (steps,) = n_steps
    assert site.query(dagster_db, "SELECT status, count(*) FROM runs GROUP BY status") == [("SUCCESS", steps)]
    materialized = {
        key
        for (key,) in site.query(
            dagster_db,
            "SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
        )
    }
    expected = {name for names, _ in plan(ARCHS, CATEGORIES) for name in names if name != "label_files"}
    assert {json.loads(key)[0] for key in materialized} >= expected  # keys are stored as JSON lists
    assert sorted(site.paths.dagster_home.rglob("*.db")) == []  # no sqlite storage beside it

    # MLflow: through the server, from its PostgreSQL store.
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    client = MlflowClient()
    champions = json.loads(site.paths.champions_json.read_text())
    for category in CATEGORIES:
        runs = mlflow.search_runs(
            experiment_names=[f"lss-{category}"],
            filter_string="attributes.status = 'FINISHED'",
            output_format="list",
        )
        assert {r.data.tags.get("dagster_partition_key") for r in runs} >= {f"{a}|{category}" for a in ARCHS}
        alias = client.get_model_version_by_alias(f"lss-{category}", "champion")
        assert str(alias.version) == champions[category]["version"]
    evaluation = mlflow.search_runs(experiment_names=["lss-evaluation"], output_format="list")
    assert [r.info.status for r in evaluation] == ["FINISHED"]
    mlflow_db = site.config.mlflow_db
    (partition_runs,) = site.query(
        mlflow_db,
        "SELECT count(*) FROM runs r JOIN experiments e USING (experiment_id) WHERE e.name LIKE 'lss-%%'",
    )
    assert partition_runs[0] >= len(CATEGORIES) * len(ARCHS) + 1
    assert not site.paths.mlflow_db.exists()
