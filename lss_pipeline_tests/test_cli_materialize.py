"""From the CLI, as a user runs it: `dagster asset materialize` of dicom_metadata,labels on a faulty set."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from lss_pipeline.core.synth import generate_dataset, read_manifest

REPO = Path(__file__).resolve().parent.parent


def test_cli_materializes_ingest_on_faulty_set_and_checks_report(tmp_path):
    raw_dir = tmp_path / "raw"
    generate_dataset(raw_dir, n_studies=10, seed=5, faults=True, rows=128, workers=1)
    env = {
        **os.environ,
        "LSS_DATA_DIR": str(tmp_path / "data"),
        "LSS_RAW_DIR": str(raw_dir),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "lss_pipeline.definitions",
            "--select",
            "dicom_metadata,labels",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = completed.stdout + completed.stderr
    assert completed.returncode == 0, log[-4000:]
    assert "RUN_SUCCESS" in log

    quarantine = pl.read_parquet(tmp_path / "data" / "processed" / "quarantine.parquet")
    metadata = pl.read_parquet(tmp_path / "data" / "processed" / "dicom_metadata.parquet")
    manifest = read_manifest(raw_dir)
    kinds = {fault["kind"]: fault for fault in manifest["faults"]}
    for kind in ("non_dicom_file", "truncated_dicom"):
        assert kinds[kind]["path"] in set(quarantine["path"]), kind
    # Every file on disk is either a metadata row or a quarantine row.
    on_disk = {p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*.dcm")}
    assert on_disk == set(metadata["path"]) | set(quarantine["path"])
    assert not {"PatientName", "PatientID", "PatientBirthDate"} & set(metadata.columns)
    # The checks ran and named what they found: the off-image coordinate and the missing series.
    assert "Asset check 'coordinates_point_at_instances' on 'labels' did not pass" in log
    assert "Asset check 'studies_have_required_series' on 'labels' did not pass" in log
    assert "Asset check 'quarantine_share_below_bound' on 'dicom_metadata' passed" in log
