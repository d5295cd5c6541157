"""Fixtures shared by the label-file sensor and automation tests."""

from pathlib import Path

import pytest
from dagster import DagsterInstance

from lss_pipeline.core import label_watch
from lss_pipeline.core.constants import COORDINATES_CSV, SERIES_CSV, TRAIN_CSV


def write_label_files(raw: Path, severity: str = "Normal/Mild") -> None:
    """The three watched label files, minimal but well-formed."""
    raw.mkdir(parents=True, exist_ok=True)
    (raw / TRAIN_CSV).write_text(f"study_id,spinal_canal_stenosis_l1_l2\n1,{severity}\n")
    (raw / COORDINATES_CSV).write_text(
        "study_id,series_id,instance_number,condition,level,x,y\n1,2,3,Spinal Canal Stenosis,L1/L2,4.0,5.0\n"
    )
    (raw / SERIES_CSV).write_text("study_id,series_id,series_description\n1,2,Sagittal T2/STIR\n")


@pytest.fixture
def watched_raw_dir(tmp_path, monkeypatch) -> Path:
    """LSS_RAW_DIR pointing at an empty folder; no real pause between the watcher's two reads."""
    raw = tmp_path / "raw"
    monkeypatch.setenv("LSS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LSS_RAW_DIR", str(raw))
    monkeypatch.setattr(label_watch, "_pause", lambda seconds: None)
    return raw


@pytest.fixture
def ephemeral_instance():
    """An in-memory Dagster instance, disposed after the test: left to the garbage collector, its
    artifact folder (a TemporaryDirectory) is cleaned up implicitly, with a ResourceWarning."""
    with DagsterInstance.ephemeral() as instance:
        yield instance
