# Two commands for a newcomer: `make demo` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lss-installed

export NO_ALBUMENTATIONS_UPDATE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export DO_NOT_TRACK := 1

.PHONY: setup demo test test-ui ui validate lint format bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

# Synthetic data when no real dataset is configured, every asset in dependency order, a summary.
demo: setup
	$(BIN)/lss-pipeline demo

# Everything but the browser tests (those are `make test-ui`): fast tests first, then the
# slow end-to-end ones, so a broken unit fails in seconds.
test: setup
	$(BIN)/python -m pytest -m "not ui and not slow" -q
	$(BIN)/python -m pytest -m "slow and not ui" -q

# Real-browser tests of the Dagster and MLflow UIs (installs Debian's chromium when root).
test-ui: setup
	bash scripts/install_chromium.sh || echo "Chromium could not be installed: the browser tests will skip, saying why"
	$(BIN)/python -m pytest -m ui -q

# Lint, format and type checks (CI runs this too).
lint: setup
	$(BIN)/ruff check lss_pipeline lss_pipeline_tests benchmarks
	$(BIN)/ruff format --check lss_pipeline lss_pipeline_tests benchmarks
	$(BIN)/mypy lss_pipeline

format: setup
	$(BIN)/ruff check --fix lss_pipeline lss_pipeline_tests benchmarks
	$(BIN)/ruff format lss_pipeline lss_pipeline_tests benchmarks

# The Dagster UI with its daemon (sensors, automation: retraining on new labels) and the MLflow UI.
ui: setup
	bash scripts/ui.sh

validate: setup
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: setup
	$(BIN)/python benchmarks/bench_dicom_metadata.py
	$(BIN)/python benchmarks/bench_crops.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_synth.py --studies 60 --workers 1
