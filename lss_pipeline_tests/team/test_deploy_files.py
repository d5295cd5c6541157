"""deploy/helm-values.yaml says what the team tests run: PostgreSQL driver, two databases, the
MLflow server for every run, the `gpu` pool limit per step, no password."""

import yaml

from lss_pipeline.core.paths import DEPLOY_DAGSTER_TEAM_YAML, DEPLOY_DIR
from lss_pipeline.core.team.postgres import SQLALCHEMY_SCHEME

HELM_VALUES = DEPLOY_DIR / "helm-values.yaml"


def test_helm_values_match_the_team_instance_config():
    helm = yaml.safe_load(HELM_VALUES.read_text())
    team = yaml.safe_load(DEPLOY_DAGSTER_TEAM_YAML.read_text())
    postgres = helm["postgresql"]
    assert postgres["enabled"] is False and "postgresqlPassword" not in postgres
    assert helm["generatePostgresqlPasswordSecret"] is False and helm["global"]["postgresqlSecretName"]
    assert (
        postgres["postgresqlScheme"]
        == SQLALCHEMY_SCHEME
        == team["storage"]["postgres"]["postgres_db"]["scheme"]
    )
    assert (
        postgres["postgresqlDatabase"]
        not in HELM_VALUES.read_text().split("--backend-store-uri")[1].split()[0]
    )
    pools = team["concurrency"]["pools"]
    assert helm["concurrency"]["pools"] == {
        "defaultLimit": pools["default_limit"],
        "granularity": pools["granularity"],
    }

    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    code_env = {item["name"]: item["value"] for item in deployment["env"]}
    run_env = dict(item.split("=", 1) for item in helm["runLauncher"]["config"]["k8sRunLauncher"]["envVars"])
    for env in (code_env, run_env):
        assert env["LSS_DEPLOYMENT"] == "k8s"
        assert env["MLFLOW_TRACKING_URI"].startswith("http")  # a server, not a per-pod sqlite file
        assert env["LSS_DATA_DIR"] and env["LSS_RAW_DIR"]
    assert code_env == {key: run_env[key] for key in code_env}
