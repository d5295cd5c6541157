"""Every file and folder the pipeline reads or writes, in one place.

Nothing else in the package spells a file name: code asks ``settings.paths`` (a :class:`Paths`)
for the path it needs. The Kaggle input names come from ``core/constants.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lss_pipeline.core.constants import (
    COORDINATES_CSV,
    SERIES_CSV,
    SUBMISSION_CSV,
    TEST_IMAGES,
    TEST_SERIES_CSV,
    TRAIN_CSV,
    TRAIN_IMAGES,
)

# Written by `lss-pipeline synth` beside the Kaggle files; marks a synthetic raw folder.
SYNTH_MANIFEST = "synth_manifest.json"
# Ground truth of synthetic test studies; never an input of the pipeline (tests score against it).
SYNTH_SOLUTION = "synth_solution.csv"
# True grades of synthetic train studies beside train.csv's written ones (which carry annotator
# noise); never an input of the pipeline: benchmarks score models against the anatomy with it.
SYNTH_TRAIN_TRUTH = "synth_train_truth.csv"
# The repository's deploy/ folder; its dagster.yaml is the instance config of the local deployment.
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
DAGSTER_YAML = "dagster.yaml"
DEPLOY_DAGSTER_YAML = DEPLOY_DIR / DAGSTER_YAML
# The team deployment's instance config: Dagster's storage in PostgreSQL (core/team).
DEPLOY_DAGSTER_TEAM_YAML = DEPLOY_DIR / "dagster-team.yaml"


@dataclass(frozen=True)
class Paths:
    data_dir: Path
    raw_dir: Path

    # --- raw RSNA folder (input) ----------------------------------------------------------
    @property
    def train_csv(self) -> Path:
        return self.raw_dir / TRAIN_CSV

    @property
    def coordinates_csv(self) -> Path:
        return self.raw_dir / COORDINATES_CSV

    @property
    def series_csv(self) -> Path:
        return self.raw_dir / SERIES_CSV

    @property
    def test_series_csv(self) -> Path:
        return self.raw_dir / TEST_SERIES_CSV

    @property
    def sample_submission_csv(self) -> Path:
        return self.raw_dir / SUBMISSION_CSV

    @property
    def train_images(self) -> Path:
        return self.raw_dir / TRAIN_IMAGES

    @property
    def test_images(self) -> Path:
        return self.raw_dir / TEST_IMAGES

    @property
    def label_files(self) -> tuple[Path, Path, Path]:
        """The files whose content hash is the labels' data version."""
        return (self.train_csv, self.coordinates_csv, self.series_csv)

    @property
    def synth_manifest(self) -> Path:
        return self.raw_dir / SYNTH_MANIFEST

    @property
    def synth_solution(self) -> Path:
        return self.raw_dir / SYNTH_SOLUTION

    @property
    def synth_train_truth(self) -> Path:
        return self.raw_dir / SYNTH_TRAIN_TRUTH

    @property
    def dataset_kind(self) -> str:
        """``synthetic`` when the raw folder was written by `lss-pipeline synth`, else ``rsna``."""
        return "synthetic" if self.synth_manifest.exists() else "rsna"

    # --- ingest ---------------------------------------------------------------------------
    @property
    def processed_dir(self) -> Path:
        return self.data_dir / "processed"

    @property
    def dicom_metadata(self) -> Path:
        return self.processed_dir / "dicom_metadata.parquet"

    @property
    def quarantine(self) -> Path:
        return self.processed_dir / "quarantine.parquet"

    @property
    def labels(self) -> Path:
        return self.processed_dir / "labels.parquet"

    @property
    def labels_stats(self) -> Path:
        return self.processed_dir / "labels_stats.json"

    @property
    def data_splits(self) -> Path:
        return self.processed_dir / "data_splits.parquet"

    # --- crops (per category) ---------------------------------------------------------------
    @property
    def crops_dir(self) -> Path:
        return self.data_dir / "crops"

    def crops_category_dir(self, category: str) -> Path:
        return self.crops_dir / category

    def crops_array(self, category: str) -> Path:
        return self.crops_category_dir(category) / "crops.npy"

    def crops_index(self, category: str) -> Path:
        return self.crops_category_dir(category) / "index.parquet"

    def crops_skipped(self, category: str) -> Path:
        return self.crops_category_dir(category) / "skipped.parquet"

    def crops_samples_png(self, category: str) -> Path:
        return self.crops_category_dir(category) / "samples.png"

    def class_weights(self, category: str) -> Path:
        return self.crops_category_dir(category) / "class_weights.json"

    # --- models (per architecture × category) -----------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def model_dir(self, arch: str, category: str) -> Path:
        return self.models_dir / arch / category

    @staticmethod
    def variant_arch(arch: str, variant: str) -> str:
        """The ``arch`` key of a partition's variant (another recipe trained beside it, e.g. the other
        loss): its outputs live in ``model_dir(variant_arch(arch, variant), category)``."""
        return f"{arch}-{variant}"

    def model_fold_dir(self, arch: str, category: str, fold: int) -> Path:
        return self.model_dir(arch, category) / f"fold{fold}"

    def model_summary(self, arch: str, category: str) -> Path:
        return self.model_dir(arch, category) / "summary.json"

    def model_oof(self, arch: str, category: str) -> Path:
        """Out-of-fold probabilities of every fold model of this partition."""
        return self.model_dir(arch, category) / "oof.parquet"

    def model_test_predictions(self, arch: str, category: str) -> Path:
        """Test-split probabilities (mean of the fold models)."""
        return self.model_dir(arch, category) / "test_predictions.parquet"

    def model_training_state(self, arch: str, category: str) -> Path:
        """Present while a training of this partition is unfinished: the MLflow run a rerun resumes."""
        return self.model_dir(arch, category) / "training_state.json"

    @staticmethod
    def checkpoint_last(run_dir: Path) -> Path:
        return run_dir / "last.pt"

    @staticmethod
    def checkpoint_best(run_dir: Path) -> Path:
        return run_dir / "best.pt"

    @staticmethod
    def fold_oof(run_dir: Path) -> Path:
        return run_dir / "oof.parquet"

    @staticmethod
    def fold_summary(run_dir: Path) -> Path:
        return run_dir / "summary.json"

    # --- localisation and predictions -------------------------------------------------------
    @property
    def localisers_dir(self) -> Path:
        return self.data_dir / "localisers"

    def localiser_dir(self, category: str) -> Path:
        return self.localisers_dir / category

    def localiser_model(self, category: str) -> Path:
        """Weights and constructor arguments of the category's localiser (no MLflow needed to load)."""
        return self.localiser_dir(category) / "model.pt"

    def localiser_summary(self, category: str) -> Path:
        return self.localiser_dir(category) / "summary.json"

    def localiser_errors(self, category: str) -> Path:
        """Per labelled test-split point: how far the localised point is from it."""
        return self.localiser_dir(category) / "errors.parquet"

    def localiser_test_points(self, category: str) -> Path:
        """The category's points localised on the test-split studies."""
        return self.localiser_dir(category) / "test_points.parquet"

    @property
    def localisation_table(self) -> Path:
        """One row per category: localisation errors on the test split (the evaluation report shows it)."""
        return self.localisers_dir / "localisation.parquet"

    @property
    def predictions_dir(self) -> Path:
        return self.data_dir / "predictions"

    @property
    def predictions_table(self) -> Path:
        return self.predictions_dir / "predictions.parquet"

    @property
    def submission_csv(self) -> Path:
        return self.predictions_dir / "submission.csv"

    def study_predictions(self, study_id: int) -> Path:
        """One graded study of ``predictions``: 25 rows of grades and points."""
        return self.predictions_dir / "studies" / f"{study_id}.parquet"

    @property
    def localised_test_predictions(self) -> Path:
        """Grades of the test-split studies from localised (not labelled) points, for the report."""
        return self.predictions_dir / "localised_test_predictions.parquet"

    # `lss-pipeline predict --out DIR`: what one graded study folder gets.
    @staticmethod
    def study_grades_csv(out_dir: Path) -> Path:
        return out_dir / "grades.csv"

    @staticmethod
    def study_grades_json(out_dir: Path) -> Path:
        return out_dir / "grades.json"

    @staticmethod
    def study_points_parquet(out_dir: Path) -> Path:
        return out_dir / "points.parquet"

    @staticmethod
    def series_overlay_png(out_dir: Path, series_id: int) -> Path:
        return out_dir / f"series_{series_id}.png"

    # --- evaluation ---------------------------------------------------------------------------
    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def report_html(self) -> Path:
        return self.reports_dir / "evaluation.html"

    @property
    def report_markdown(self) -> Path:
        return self.reports_dir / "evaluation.md"

    @property
    def report_metrics_csv(self) -> Path:
        return self.reports_dir / "evaluation_metrics.csv"

    @property
    def report_metrics_parquet(self) -> Path:
        return self.reports_dir / "evaluation_metrics.parquet"

    @property
    def champions_json(self) -> Path:
        return self.reports_dir / "champions.json"

    def report_plot(self, name: str) -> Path:
        """A PNG plot of the report (also embedded in the HTML page)."""
        return self.reports_dir / f"{name}.png"

    @staticmethod
    def version_test_predictions_artifact(registered_model: str, version: str) -> Path:
        """Where, inside an ``lss-evaluation`` MLflow run, a registered version's test predictions are."""
        return Path("test_predictions") / f"{registered_model}-v{version}.parquet"

    # --- services -----------------------------------------------------------------------------
    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def mlflow_db(self) -> Path:
        return self.mlflow_dir / "mlflow.db"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def dagster_yaml(self) -> Path:
        """The instance config Dagster reads (a copy of one in deploy/, made by `make ui` and the demo)."""
        return self.dagster_home / DAGSTER_YAML

    @property
    def locks_dir(self) -> Path:
        """File locks that serialize writers of one asset on one data folder."""
        return self.data_dir / ".locks"

    def writer_lock(self, asset: str) -> Path:
        """The lock file held while ``asset``'s outputs are published."""
        return self.locks_dir / f"{asset}.lock"
