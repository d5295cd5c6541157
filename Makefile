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

.PHONY: setup demo test test-ui test-all ui validate bench clean-data

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

# Synthetic data when no real dataset is configured, every asset in dependency order, a summary.
demo: setup
	$(BIN)/lss-pipeline demo

# Everything but the browser tests (those are `make test-ui`).
test: setup
	$(BIN)/python -m pytest -m "not ui" -q

# Real-browser tests of the Dagster and MLflow UIs (installs Debian's chromium when root).
test-ui: setup
	bash scripts/install_chromium.sh || echo "Chromium could not be installed: the browser tests will skip, saying why"
	$(BIN)/python -m pytest -m ui -q

ui: setup
	bash scripts/ui.sh

validate: setup
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: setup
	$(BIN)/python benchmarks/bench_dicom_metadata.py
	$(BIN)/python benchmarks/bench_crops.py
	$(BIN)/python benchmarks/bench_training.py
