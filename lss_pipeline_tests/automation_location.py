"""A code location for a real `dagster-daemon`: the real one (sensors, automation conditions,
label_files from LSS_RAW_DIR) with stand-ins for the assets (automation_harness.py), each run in
one process.

The stand-ins take milliseconds; a process per step (Dagster's default executor) would take
seconds each on a 2-core machine, and the daemon tests are about requests and cursors, not
executors.
"""

from dagster import Definitions, in_process_executor

from lss_pipeline.core.settings import Settings
from lss_pipeline.definitions import build_definitions
from lss_pipeline_tests.automation_harness import stand_in_definitions

# One Definitions object at module scope (Dagster's rule for a code location).
defs = Definitions.merge(
    stand_in_definitions(build_definitions(Settings.from_env())), Definitions(executor=in_process_executor)
)
