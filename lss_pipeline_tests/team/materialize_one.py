"""One team member's run: ``python -m lss_pipeline_tests.team.materialize_one --assets a,b [--partition k]``.

Materializes against the instance in DAGSTER_HOME with the resources of LSS_DEPLOYMENT, then prints
``{"run_id": ..., "success": ...}`` as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", required=True, help="comma-separated asset names")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--config", default="{}", help="JSON: asset name -> its config")
    args = parser.parse_args(argv)

    from dagster import AssetSelection, DagsterInstance, materialize

    from lss_pipeline.core.settings import Settings
    from lss_pipeline.definitions import ASSET_CHECKS, ASSETS
    from lss_pipeline.resources import resources_for

    names = args.assets.split(",")
    ops = {name: {"config": value} for name, value in json.loads(args.config).items()}
    with DagsterInstance.get() as instance:
        result = materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=AssetSelection.assets(*names),
            partition_key=args.partition,
            instance=instance,
            resources=resources_for(Settings.from_env().deployment),
            run_config={"ops": ops},
            raise_on_error=False,
        )
    print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
