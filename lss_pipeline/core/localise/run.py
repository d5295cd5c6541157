"""Train one category's localiser end to end: samples, fit, test-split errors, MLflow run and registry.

The localiser trains on the cv studies of ``data_splits`` and is measured on its test studies,
which it never saw. ``sbs`` needs the disc levels: it takes them from the ``scs`` / ``nfs``
localisers already trained in this data folder (the chain prediction uses), or from the
labelled canal points when those are not there yet (then ``levels_from`` says so).

Outputs (``settings.paths``): ``localiser_model`` (weights, loadable without MLflow),
``localiser_summary``, ``localiser_errors``, ``localiser_test_points``, and the category's row
of ``localisation_table``. MLflow: a run in experiment ``lss-localizer-{category}`` and a
registered version of ``lss-localizer-{category}``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from lss_pipeline.core import atomic
from lss_pipeline.core.localise import model as model_module
from lss_pipeline.core.localise.data import Sample, build_samples, canal_points_of
from lss_pipeline.core.localise.fit import FitConfig, fit_localiser
from lss_pipeline.core.localise.infer import localise_study
from lss_pipeline.core.localise.metrics import point_errors, summarise
from lss_pipeline.core.localise.model import PointLocaliser
from lss_pipeline.core.localise.series import PixelCache, PixelReader, study_stacks
from lss_pipeline.core.localise.spec import spec_for
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.settings import Settings

module_log = logging.getLogger(__name__)

# Fit settings per profile; demo epochs per category (sbs has ~5 samples per study).
PROFILE_FITS: dict[str, FitConfig] = {
    "demo": FitConfig(epochs=24, batch_size=8, lr=2e-3, widths=(12, 16, 24, 32, 48)),
    "full": FitConfig(epochs=60, batch_size=16, lr=1e-3, widths=(24, 32, 48, 64, 96)),
}
EPOCH_SHARE: dict[str, float] = {"scs": 1.0, "nfs": 1.0, "sbs": 0.4}
LOCK_TIMEOUT_S = 600.0


class Log(Protocol):
    def info(self, msg: str) -> Any: ...


def registered_localiser_name(category: str) -> str:
    return f"lss-localizer-{category}"


def experiment_name(category: str) -> str:
    return f"lss-localizer-{category}"


def fit_config_for(profile: str, category: str, **overrides: Any) -> FitConfig:
    """The profile's fit settings for ``category``; ``overrides`` (non-zero values) win."""
    base = PROFILE_FITS[profile]
    values: dict[str, Any] = {"epochs": max(1, math.ceil(base.epochs * EPOCH_SHARE[category]))}
    values.update({k: v for k, v in overrides.items() if v})
    return replace(base, **values)


# --- model files ------------------------------------------------------------------------------
def save_localiser(model: PointLocaliser, category: str, paths: Paths) -> None:
    state = {
        "category": category,
        "in_channels": model.in_channels,
        "n_points": model.n_points,
        "widths": list(model.widths),
        "canvas": model.canvas,
        "state_dict": model.state_dict(),
    }
    with atomic.atomic_path(paths.localiser_model(category)) as tmp:
        torch.save(state, tmp)


def load_localiser(paths: Paths, category: str) -> PointLocaliser:
    """The localiser last trained in this data folder (CPU, eval mode)."""
    path = paths.localiser_model(category)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: materialize level_localizer[{category}] first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = PointLocaliser(state["in_channels"], state["n_points"], state["widths"], canvas=state["canvas"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def load_registered_localiser(category: str, version: str = "latest") -> PointLocaliser:
    """A registered ``lss-localizer-{category}`` version: a number, ``latest`` or ``@alias``."""
    import mlflow.pytorch

    ref = f"/{version}" if not version.startswith("@") else version
    model = mlflow.pytorch.load_model(
        f"models:/{registered_localiser_name(category)}{ref}", map_location="cpu"
    )
    return model.eval()


# --- evaluation ------------------------------------------------------------------------------
def localise_studies(
    study_ids: list[int],
    metadata: pl.DataFrame,
    paths: Paths,
    models: Mapping[str, PointLocaliser],
    *,
    known_levels: Mapping[int, dict[str, np.ndarray]] | None = None,
    reader: PixelReader | None = None,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Points of every study (``infer.POINTS_SCHEMA``) and the summed decode / localise seconds."""
    frames, timings = [], {"decode_s": 0.0, "localise_s": 0.0}
    for study_id in study_ids:
        pixels = PixelCache(paths.raw_dir, reader)
        levels = (known_levels or {}).get(study_id)
        result = localise_study(study_id, metadata, pixels, models, known_levels=levels)
        frames.append(result.points)
        for key in timings:
            timings[key] += result.timings[key]
    return (pl.concat(frames) if frames else pl.DataFrame()), timings


def labelled_levels(labels: pl.DataFrame, metadata: pl.DataFrame, study_ids: list[int]) -> dict[int, dict]:
    """Study -> level -> the labelled canal point (the levels when no sagittal localiser exists yet)."""
    out = {}
    for study_id in study_ids:
        meta = metadata.filter(pl.col("study_id") == study_id)
        out[study_id] = canal_points_of(labels.filter(pl.col("study_id") == study_id), study_stacks(meta))
    return out


def update_localisation_table(paths: Paths, summary_row: pl.DataFrame) -> pl.DataFrame:
    """Replace this category's row of ``paths.localisation_table`` (a lock serialises partitions)."""
    target = paths.localisation_table
    with atomic.exclusive(paths.writer_lock("localisation_table"), "localisation table", LOCK_TIMEOUT_S):
        table = summary_row
        if target.is_file():
            old = pl.read_parquet(target)
            categories = summary_row["category"].to_list()
            table = pl.concat(
                [old.filter(~pl.col("category").is_in(categories)), summary_row], how="diagonal_relaxed"
            )
        table = table.sort("category")
        atomic.write_parquet(table, target)
    return table


# --- the whole thing ---------------------------------------------------------------------------
@dataclass
class LocaliserResult:
    category: str
    model: PointLocaliser = field(repr=False)
    history: list[dict[str, float]] = field(repr=False)
    errors: pl.DataFrame = field(repr=False)
    summary_row: dict[str, Any]
    summary: dict[str, Any] = field(repr=False)
    mlflow_run_id: str | None
    experiment_id: str | None
    registered_model: str
    model_version: int | None


def _slice_offset(samples: list[Sample]) -> float:
    offsets = [s.slice_offset_mm for s in samples if s.slice_offset_mm is not None]
    return float(np.median(offsets)) if offsets else 0.0


def train_localiser(
    settings: Settings,
    category: str,
    config: FitConfig | None = None,
    *,
    tags: Mapping[str, Any] | None = None,
    log: Log = module_log,
    register: bool = True,
    reader: PixelReader | None = None,
) -> LocaliserResult:
    """Train, measure and (``register``) log + register ``category``'s localiser; MLflow must be
    configured when ``register`` (``train.tracking.configure_mlflow``)."""
    from lss_pipeline.core.dicom.store import read_metadata
    from lss_pipeline.core.labels.splits import read_splits
    from lss_pipeline.core.labels.store import read_labels
    from lss_pipeline.core.train import tracking

    spec = spec_for(category)
    config = config or fit_config_for(settings.profile_name, category)
    paths = settings.paths
    metadata, _ = read_metadata(paths)
    labels, splits = read_labels(paths), read_splits(paths)
    cv_ids = splits.filter(pl.col("split") == "cv")["study_id"].to_list()
    test_ids = splits.filter(pl.col("split") == "test")["study_id"].to_list()
    profile = settings.profile
    started = time.perf_counter()

    def work(run: Any) -> LocaliserResult:
        def progress(done: int, total: int) -> None:
            if done == total or done % 20 == 0:
                log.info(f"{category} localiser: canvases of {done}/{total} cv studies")

        samples = build_samples(
            spec, labels, metadata, paths.raw_dir, cv_ids, reader=reader, progress=progress
        )
        log.info(f"{category} localiser: {len(samples)} training canvases from {len(cv_ids)} cv studies")
        fit = fit_localiser(spec, samples, config, on_epoch=(run.log_metrics if run is not None else None))
        model = fit.model
        if spec.per_level:
            model.depth_offset_mm.fill_(_slice_offset(samples))
        paths.localiser_dir(category).mkdir(parents=True, exist_ok=True)
        save_localiser(model, category, paths)

        models: dict[str, PointLocaliser] = {category: model}
        levels_from = "own"
        known = None
        if spec.per_level:
            for other in ("scs", "nfs"):
                if paths.localiser_model(other).is_file():
                    models[other] = load_localiser(paths, other)
            levels_from = "scs/nfs localisers" if len(models) > 1 else "labelled canal points"
            if len(models) == 1:
                known = labelled_levels(labels, metadata, test_ids)
        points, timings = localise_studies(
            test_ids, metadata, paths, models, known_levels=known, reader=reader
        )
        own = points.filter(pl.col("category") == category) if points.height else points
        errors = (
            point_errors(own, labels, metadata, crop_mm=profile.crop_mm, slices=profile.slices)
            if own.height
            else pl.DataFrame()
        )
        errors = errors.filter(pl.col("category") == category) if errors.height else errors
        table = summarise(errors) if errors.height else pl.DataFrame()
        row = table.row(0, named=True) if table.height else {"category": category, "points": 0}
        log.info(
            f"{category} localiser on {len(test_ids)} test studies: in-plane median "
            f"{_fmt(row.get('in_plane_median_mm'))} mm, level accuracy {_fmt(row.get('level_accuracy'), 3)}"
        )
        summary = {
            "category": category,
            "profile": settings.profile_name,
            "fit": config.as_params(),
            "canvas": spec.canvas.as_dict(),
            "n_train_studies": len(cv_ids),
            "n_train_canvases": len(samples),
            "n_test_studies": len(test_ids),
            "levels_from": levels_from,
            "slice_offset_mm": float(model.depth_offset_mm),
            "fit_seconds": fit.seconds,
            "test_timings": timings,
            "test_metrics": row,
            "history": fit.history,
            "seconds": time.perf_counter() - started,
        }
        version = None
        if run is not None:
            run.log_metrics({f"test_{k}": v for k, v in row.items() if isinstance(v, (int, float))})
            if register:
                example = np.zeros((2, model.in_channels, spec.canvas.size, spec.canvas.size), np.float32)
                version = tracking.log_and_register_model(
                    model,
                    example,
                    registered_localiser_name(category),
                    by_value_modules=[model_module],
                    version_tags={
                        "category": category,
                        "profile": settings.profile_name,
                        **spec.canvas.as_dict(),
                    },
                )
                log.info(
                    f"{category} localiser registered as {registered_localiser_name(category)} v{version}"
                )
        summary["registered_model"] = registered_localiser_name(category)
        summary["model_version"] = version
        summary["mlflow_run_id"] = run.run_id if run is not None else None
        atomic.write_json(summary, paths.localiser_summary(category))
        atomic.write_parquet(errors, paths.localiser_errors(category))
        atomic.write_parquet(own, paths.localiser_test_points(category))
        if table.height:
            update_localisation_table(paths, table)
        return LocaliserResult(
            category, model, fit.history, errors, row, summary,
            run.run_id if run is not None else None, None, registered_localiser_name(category), version,
        )  # fmt: skip

    if not register:
        return work(None)
    run_tags = {**(tags or {}), "category": category}
    with tracking.start_run(experiment_name(category), f"localizer-{category}", run_tags) as run:
        run.log_params(
            {**config.as_params(), **{f"canvas_{k}": v for k, v in spec.canvas.as_dict().items()},
             "profile": settings.profile_name, "cv_studies": len(cv_ids), "test_studies": len(test_ids)}
        )  # fmt: skip
        result = work(run)
    result.experiment_id = tracking.ensure_experiment(experiment_name(category))
    return result


def _fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
