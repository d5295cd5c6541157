#!/usr/bin/env bash
# Serve the Dagster UI (webserver + daemon via `dagster dev`) and the MLflow UI on 127.0.0.1.
#   LSS_DATA_DIR  data root (default: data/ in the repo); DAGSTER_HOME = $LSS_DATA_DIR/dagster_home
#   DAGSTER_PORT  default 3000        MLFLOW_PORT  default 5000
#   LSS_GPU_POOL_LIMIT  concurrent steps in the `gpu` pool (default 1)
# Ctrl-C stops both (each runs in its own process group, which is signalled as a whole).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VENV_BIN="${VENV_BIN:-$REPO_ROOT/.venv/bin}"
[ -x "$VENV_BIN/dagster" ] || { echo "no $VENV_BIN/dagster: run the set-up first (make setup)" >&2; exit 1; }

export LSS_DATA_DIR="$(realpath -m "${LSS_DATA_DIR:-$REPO_ROOT/data}")"
export DAGSTER_HOME="$LSS_DATA_DIR/dagster_home"
DAGSTER_PORT="${DAGSTER_PORT:-3000}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
MLFLOW_DIR="$LSS_DATA_DIR/mlflow"
INSTANCE_YAML=deploy/dagster.yaml
MLFLOW_BACKEND_URI="sqlite:///$MLFLOW_DIR/mlflow.db"
# LSS_DEPLOYMENT=team: the instance and the MLflow store in PostgreSQL (scripts/team_env.sh).
[ "${LSS_DEPLOYMENT:-local}" = team ] && source scripts/team_env.sh
# Dagster runs log to the same sqlite store the MLflow server shows.
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$MLFLOW_DIR/mlflow.db}"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
# MLflow 3's GenAI job runner is unused here and slows shutdown.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

mkdir -p "$DAGSTER_HOME" "$MLFLOW_DIR/artifacts"
# The instance config lives in deploy/; the copy in DAGSTER_HOME is what Dagster reads.
cp "$INSTANCE_YAML" "$DAGSTER_HOME/dagster.yaml"
"$VENV_BIN/dagster" instance concurrency set gpu "${LSS_GPU_POOL_LIMIT:-1}" >/dev/null

if [ -f workspace.yaml ]; then
    DAGSTER_TARGET=(-w workspace.yaml)
else
    DAGSTER_TARGET=(-m lss_pipeline.definitions)
fi

PGIDS=()
stop_all() {
    trap - INT TERM EXIT
    echo; echo "stopping the UIs..."
    for pgid in "${PGIDS[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
    for _ in $(seq 1 30); do
        alive=0
        for pgid in "${PGIDS[@]}"; do kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.5
    done
    for pgid in "${PGIDS[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
    echo "stopped."
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

# setsid: each server leads its own process group, so one signal reaches its children
# (dagster dev's daemon and code server; mlflow's uvicorn workers).
setsid "$VENV_BIN/dagster" dev "${DAGSTER_TARGET[@]}" -h 127.0.0.1 -p "$DAGSTER_PORT" &
PGIDS+=("$!")
setsid "$VENV_BIN/mlflow" server \
    --backend-store-uri "$MLFLOW_BACKEND_URI" \
    --artifacts-destination "$MLFLOW_DIR/artifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 &
PGIDS+=("$!")

cat <<MSG

  Dagster UI: http://127.0.0.1:$DAGSTER_PORT   (DAGSTER_HOME=$DAGSTER_HOME)
  MLflow UI:  http://127.0.0.1:$MLFLOW_PORT   (store ${MLFLOW_BACKEND_URI#sqlite:///})
  Ctrl-C stops both.

MSG

# Exit (and stop the other) as soon as either server dies.
wait -n || true
echo "a UI server exited; stopping the other." >&2
