"""lss_pipeline: Dagster-orchestrated grading of lumbar spinal stenosis on MRI (RSNA 2024 LSDC)."""

import os as _os

# Set before any of these libraries is imported: albumentations phones home at import,
# MLflow sends telemetry, and no model may be fetched from a hub at run time.
for _key, _value in (
    ("NO_ALBUMENTATIONS_UPDATE", "1"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("HF_HUB_OFFLINE", "1"),
    ("DO_NOT_TRACK", "1"),
):
    _os.environ.setdefault(_key, _value)

__version__ = "0.1.0"
