"""`lss-pipeline demo`: synthetic data when no real set is configured, then every asset in
dependency order (each partition its own run, recorded in the Dagster instance the UI reads)."""

import os
import shutil
import time
from pathlib import Path
from typing import Callable

from dagster import AssetSelection, DagsterInstance, materialize
from dagster._core.instance.ref import InstanceRef

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES, TRAIN_CSV
from lss_pipeline.core.settings import Settings
from lss_pipeline.partitions import model_partition_key

DEPLOY_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml"


def dagster_home(settings: Settings) -> Path:
    """$LSS_DATA_DIR/dagster_home with the instance config from deploy/ (shared with `make ui`)."""
    home = settings.data_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if DEPLOY_DAGSTER_YAML.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(DEPLOY_DAGSTER_YAML, home / "dagster.yaml")
    return home


def ensure_dataset(settings: Settings, n_studies: int, seed: int, say: Callable[[str], None]) -> str:
    if (settings.raw_dir / TRAIN_CSV).exists():
        kind = "synthetic" if (settings.raw_dir / "synth_manifest.json").exists() else "RSNA"
        say(f"dataset: {kind} at {settings.raw_dir}")
        return kind
    from lss_pipeline.core.synth import generate_dataset

    say(f"no dataset at {settings.raw_dir}: writing a synthetic one ({n_studies} studies, seed {seed})")
    generate_dataset(settings.raw_dir, n_studies=n_studies, seed=seed)
    return "synthetic"


def full_build_tags(settings: Settings) -> dict[str, str]:
    from lss_pipeline.core.label_watch import code_version, read_label_snapshot
    from lss_pipeline.sensors import FULL_BUILD_TRIGGER, retrain_tags

    labels_hash = read_label_snapshot(settings.raw_dir, settle_seconds=0.0).labels_hash or ""
    return retrain_tags(labels_hash, code_version(), trigger=FULL_BUILD_TRIGGER)


def plan(archs=ARCHITECTURES, categories=CATEGORIES) -> list[tuple[tuple[str, ...], str | None]]:
    """(asset names, partition key) per run, in dependency order."""
    steps: list[tuple[tuple[str, ...], str | None]] = [(("dicom_metadata", "labels", "data_splits"), None)]
    steps += [(("level_crops", "class_weights"), category) for category in categories]
    steps += [(("trained_model",), model_partition_key(a, c)) for c in categories for a in archs]
    steps.append((("evaluation_report",), None))
    return steps


def run_demo(
    settings: Settings | None = None,
    *,
    n_studies: int = 60,
    seed: int = 0,
    archs=ARCHITECTURES,
    categories=CATEGORIES,
    say: Callable[[str], None] = print,
    run_config: dict | None = None,
) -> dict:
    """Materialize the graph in order. ``run_config``: asset name → its config, for every run of it."""
    started = time.monotonic()
    settings = settings or Settings.from_env()
    kind = ensure_dataset(settings, n_studies, seed, say)
    # The instance `make ui` serves, so these runs show in the UI (its dagster.yaml reads
    # DAGSTER_HOME, set for the duration of the build only).
    home = str(dagster_home(settings))
    previous_home = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = home
    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(home)) as instance:
            _materialize_steps(instance, archs, categories, settings, run_config, say)
    finally:
        if previous_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous_home
    return {"seconds": time.monotonic() - started, "dataset": kind, "settings": settings}


def _materialize_steps(instance, archs, categories, settings: Settings, run_config, say) -> None:
    from lss_pipeline.definitions import ASSET_CHECKS, ASSETS, default_resources

    resources = default_resources()
    steps = plan(archs, categories)
    for number, (names, partition_key) in enumerate(steps, start=1):
        step_started = time.monotonic()
        label = ", ".join(names) + (f" [{partition_key}]" if partition_key else "")
        say(f"[{number}/{len(steps)}] {label} …")
        ops_config = {name: {"config": run_config[name]} for name in names if run_config and name in run_config}
        is_last = number == len(steps)
        result = materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=AssetSelection.assets(*names),
            # INFO keeps the progress lines (epochs, crop counts) and drops Dagster's DEBUG events.
            run_config={"ops": ops_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}},
            partition_key=partition_key,
            instance=instance,
            resources=resources,
            raise_on_error=True,
            # The finished build counts as a retraining for the periodic schedule.
            tags=full_build_tags(settings) if is_last else None,
        )
        failed_checks = [
            e.asset_check_evaluation_data.asset_check_key.name
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
        ]
        note = f" (checks warned: {', '.join(failed_checks)})" if failed_checks else ""
        say(f"    done in {time.monotonic() - step_started:.1f} s{note}")


def summary_lines(settings: Settings, seconds: float | None = None) -> list[str]:
    """The report path, the champion per category with its macro recall, the UI commands."""
    import json

    lines = []
    if seconds is not None:
        lines.append(f"lss_pipeline demo finished in {seconds / 60:.1f} min ({seconds:.0f} s)")
    report = settings.reports_dir / "evaluation.html"
    lines.append(f"report:    {report}" + ("" if report.exists() else " (not built yet)"))
    lines.append(f"           {settings.reports_dir / 'evaluation.md'}")
    champions_path = settings.reports_dir / "champions.json"
    if champions_path.exists():
        for category, champ in json.loads(champions_path.read_text()).items():
            lines.append(
                f"champion:  lss-{category} v{champ['version']} = {champ['arch']} "
                f"(macro recall {100 * champ['macro_recall']:.1f} %)"
            )
    lines += [
        "UIs:       make ui   → Dagster http://127.0.0.1:3000 , MLflow http://127.0.0.1:5000",
        f"           (Dagster home {settings.data_dir / 'dagster_home'}, MLflow store {settings.mlflow_tracking_uri})",
    ]
    return lines
