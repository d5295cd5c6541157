"""A code location for a real `dagster-daemon`: the real one (sensors, automation conditions,
label_files from LSS_RAW_DIR) with stand-ins for the assets (automation_harness.py)."""

from lss_pipeline.core.settings import Settings
from lss_pipeline.definitions import build_definitions
from lss_pipeline_tests.automation_harness import stand_in_definitions

defs = stand_in_definitions(build_definitions(Settings.from_env()))
