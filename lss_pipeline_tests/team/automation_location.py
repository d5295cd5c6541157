"""The daemon's code location for test_retrain_daemon: the real sensors and automation conditions
with stand-in assets (lss_pipeline_tests/automation_location.py), each run in one process.

The stand-ins take milliseconds; a process per step (Dagster's default executor) would take
seconds each on a 2-core machine, and the test is about requests and cursors, not executors.
"""

from dagster import Definitions, in_process_executor

from lss_pipeline_tests import automation_location

# One Definitions object at module scope (Dagster's rule for a code location).
defs = Definitions.merge(automation_location.defs, Definitions(executor=in_process_executor))
