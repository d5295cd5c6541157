# Sourced by scripts/ui.sh when LSS_DEPLOYMENT=team: Dagster and MLflow on PostgreSQL.
# Reads VENV_BIN and MLFLOW_PORT; sets INSTANCE_YAML, MLFLOW_BACKEND_URI and MLFLOW_TRACKING_URI.
#   LSS_PG_HOST / LSS_PG_PORT / LSS_PG_USER / LSS_PG_DAGSTER_DB / LSS_PG_MLFLOW_DB  (defaults:
#   `lss-pipeline team env`); a password comes from PGPASSWORD or ~/.pgpass, never from a file here.

# Dagster's `env:` references have no defaults: export every LSS_PG_* (set or default).
eval "$("$VENV_BIN/lss-pipeline" team env)"
# Create or upgrade both schemas (a no-op when current; stops here when no server answers).
"$VENV_BIN/lss-pipeline" team setup
INSTANCE_YAML=deploy/dagster-team.yaml
MLFLOW_BACKEND_URI="$("$VENV_BIN/lss-pipeline" team env --mlflow-backend-uri)"
# Every run of this instance logs through the MLflow server started below (a shared one if set).
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-http://127.0.0.1:$MLFLOW_PORT}"
