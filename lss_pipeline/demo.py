"""`lss-pipeline demo`: synthetic data when no real set is configured, then every asset in
dependency order (each partition its own run, recorded in the Dagster instance the UI reads)."""

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from dagster import AssetSelection, DagsterInstance, materialize

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES
from lss_pipeline.core.paths import DEPLOY_DAGSTER_TEAM_YAML, DEPLOY_DAGSTER_YAML
from lss_pipeline.core.settings import Deployment, Settings
from lss_pipeline.partitions import model_partition_key

Say = Callable[[str], None]
Step = tuple[tuple[str, ...], str | None]

# The demo's synthetic set: big enough that its test split (a fifth of the studies) holds >= 20
# Moderate SCS rows, with Moderate and Severe enriched at every level (real shares: SCS
# 88/8/5 %) so that 100 studies are enough; benchmarks/README.md ("Ablation") says the trade-off.
DEMO_STUDIES = 100
DEMO_SEED = 0
DEMO_CLASS_SHARES: dict[str, tuple[float, float, float]] = {
    "scs": (0.5, 0.3, 0.2),
    "nfs": (0.5, 0.3, 0.2),
    "sbs": (0.5, 0.3, 0.2),
}


def instance_config_for(deployment: Deployment) -> Path:
    """The instance config in deploy/ that a deployment's Dagster home gets (team: PostgreSQL)."""
    return DEPLOY_DAGSTER_TEAM_YAML if deployment == "team" else DEPLOY_DAGSTER_YAML


@contextmanager
def ui_instance(settings: Settings) -> Iterator[DagsterInstance]:
    """The Dagster instance `make ui` serves ($LSS_DATA_DIR/dagster_home), so these runs show there.

    Its dagster.yaml reads DAGSTER_HOME, which is set while the instance is open and restored after.
    """
    home = settings.paths.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(instance_config_for(settings.deployment), settings.paths.dagster_yaml)
    previous_home = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.get() as instance:
            yield instance
    finally:
        if previous_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous_home


def ensure_dataset(settings: Settings, n_studies: int, seed: int, say: Say, sites: int = 0) -> str:
    """The raw folder's dataset; a synthetic one when there is none (``sites``: the varied 8-site kind)."""
    paths = settings.paths
    if paths.train_csv.exists():
        say(f"dataset: {paths.dataset_kind} at {settings.raw_dir}")
        return paths.dataset_kind
    from lss_pipeline.core.synth import generate_dataset

    kind = f"{n_studies} studies, seed {seed}" + (f", {sites} sites" if sites else "")
    say(f"no dataset at {settings.raw_dir}: writing a synthetic one ({kind})")
    generate_dataset(
        settings.raw_dir, n_studies=n_studies, seed=seed, class_shares=DEMO_CLASS_SHARES, sites=sites
    )
    return paths.dataset_kind


def plan(
    archs: Sequence[str] = ARCHITECTURES,
    categories: Sequence[str] = CATEGORIES,
    *,
    localise: bool = True,
    test_studies: Sequence[str] = (),
) -> list[Step]:
    """(asset names, partition key) per run, in dependency order.

    The first run observes `label_files` before building from them, so the automation sees the
    labels as built from the current files and does not rebuild them again. ``localise``: train
    the level localisers (sagittal before axial); ``test_studies``: the `predictions` partitions
    (study folders of test_images/) graded last.
    """
    steps: list[Step] = [(("label_files", "dicom_metadata", "labels", "data_splits"), None)]
    steps += [(("level_crops", "class_weights"), category) for category in categories]
    steps += [(("trained_model",), model_partition_key(a, c)) for c in categories for a in archs]
    if localise:
        steps += [(("level_localizer",), c) for c in ("scs", "nfs", "sbs") if c in categories]
    steps.append((("evaluation_report",), None))
    steps += [(("predictions",), study) for study in test_studies]
    return steps


def run_demo(
    settings: Settings | None = None,
    *,
    n_studies: int = DEMO_STUDIES,
    seed: int = DEMO_SEED,
    sites: int = 0,
    archs: Sequence[str] = ARCHITECTURES,
    categories: Sequence[str] = CATEGORIES,
    say: Say = print,
    run_config: dict | None = None,
) -> dict:
    """Materialize the graph in order. ``run_config``: asset name → its config, for every run of it.

    ``n_studies``, ``seed``, ``sites``: the synthetic set written when the raw folder has none.
    """
    started = time.monotonic()
    settings = settings or Settings.from_env()
    kind = ensure_dataset(settings, n_studies, seed, say, sites=sites)
    from lss_pipeline.assets.predict import TEST_STUDIES
    from lss_pipeline.core.predict.publish import test_study_ids

    studies = [str(s) for s in test_study_ids(settings.paths)]
    with ui_instance(settings) as instance:
        instance.add_dynamic_partitions(TEST_STUDIES, studies)  # what study_folders_sensor does in `make ui`
        steps = plan(archs, categories, test_studies=studies)
        _materialize_steps(instance, steps, settings, run_config, say)
    return {"seconds": time.monotonic() - started, "dataset": kind, "settings": settings}


def _materialize_steps(
    instance: DagsterInstance, steps: list[Step], settings: Settings, run_config: dict | None, say: Say
) -> None:
    from lss_pipeline.definitions import ASSET_CHECKS, ASSETS
    from lss_pipeline.resources import LssSettings, ProfileName, resources_for

    resources = {
        **resources_for(settings.deployment),
        "settings": LssSettings(
            data_dir=str(settings.data_dir),
            raw_dir=str(settings.raw_dir),
            profile=cast(ProfileName, settings.profile_name),
        ),
    }
    for number, (names, partition_key) in enumerate(steps, start=1):
        step_started = time.monotonic()
        label = ", ".join(names) + (f" [{partition_key}]" if partition_key else "")
        say(f"[{number}/{len(steps)}] {label} …")
        ops_config = {
            name: {"config": run_config[name]} for name in names if run_config and name in run_config
        }
        result = materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=AssetSelection.assets(*names),
            # INFO keeps the progress lines (epochs, crop counts) and drops Dagster's DEBUG events.
            run_config={"ops": ops_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}},
            partition_key=partition_key,
            instance=instance,
            resources=resources,
            raise_on_error=True,
        )
        failed_checks = [
            evaluation.check_name
            for evaluation in result.get_asset_check_evaluations()
            if not evaluation.passed
        ]
        note = f" (checks warned: {', '.join(failed_checks)})" if failed_checks else ""
        say(f"    done in {time.monotonic() - step_started:.1f} s{note}")


def _on_test(champ: dict) -> str:
    """The champion's test-split macro recall with its interval, studies and rows per class."""
    if champ.get("macro_recall") is None:
        return "(not scored on today's test split)"
    text = f"(test-split macro recall {100 * champ['macro_recall']:.1f} %"
    if champ.get("macro_recall_ci95"):
        lo, hi = champ["macro_recall_ci95"]
        text += f", 95 % CI {100 * lo:.1f}–{100 * hi:.1f}"
    if champ.get("macro_recall_test_studies"):
        text += f"; {champ['macro_recall_test_studies']} studies"
    if champ.get("macro_recall_class_counts"):
        text += ", n " + "/".join(str(n) for n in champ["macro_recall_class_counts"])
    return text + ")"


def summary_lines(settings: Settings, seconds: float | None = None) -> list[str]:
    """The report path, the champion per category with its macro recall, the UI commands."""
    paths = settings.paths
    lines = []
    if seconds is not None:
        lines.append(f"lss_pipeline demo finished in {seconds / 60:.1f} min ({seconds:.0f} s)")
    lines.append(
        f"report:    {paths.report_html}" + ("" if paths.report_html.exists() else " (not built yet)")
    )
    lines.append(f"           {paths.report_markdown}")
    if paths.champions_json.exists():
        for category, champ in json.loads(paths.champions_json.read_text()).items():
            lines.append(f"champion:  lss-{category} v{champ['version']} = {champ['arch']} {_on_test(champ)}")
    if paths.submission_csv.exists():
        lines.append(f"graded:    {paths.submission_csv} (test_images/, from localised points)")
    lines += [
        "UIs:       make ui   → Dagster http://127.0.0.1:3000 , MLflow http://127.0.0.1:5000",
        f"           (Dagster home {paths.dagster_home}, MLflow store {settings.mlflow_tracking_uri})",
        "           new label files in the raw folder are retrained on while `make ui` runs",
    ]
    return lines
