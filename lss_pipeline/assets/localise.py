"""`level_localizer` [category]: the model that finds the category's points on unlabelled studies.

One call into ``core/localise/run.train_localiser`` (cv studies train it, test-split studies
measure it; an MLflow run and a registered ``lss-localizer-{category}`` version) plus metadata
for the UI. Build ``scs`` and ``nfs`` before ``sbs``: the axial localiser is measured with the
levels the sagittal ones find.
"""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from lss_pipeline.assets.train import GPU_STEP_K8S_CONFIG
from lss_pipeline.core.markdown import markdown_rows
from lss_pipeline.partitions import category_partitions
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking

LEVEL_LOCALIZER_VERSION = "1"


class LocaliserConfig(Config):
    """Zero means: the profile's value (core/localise/run.PROFILE_FITS)."""

    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0
    seed: int = 0


@asset(
    group_name="localisation",
    partitions_def=category_partitions,
    deps=["dicom_metadata", "labels", "data_splits"],
    kinds={"pytorch", "mlflow"},
    pool="gpu",
    op_tags={"dagster-k8s/config": GPU_STEP_K8S_CONFIG},
    code_version=LEVEL_LOCALIZER_VERSION,
    description=(
        "Heatmap localiser for one category (SCS on Sagittal T2, NFS on Sagittal T1, SBS on the axial slice "
        "nearest each sagittal level): trained on the cv studies, measured on the test split (in-plane and "
        "through-plane error, level accuracy), registered as lss-localizer-{category}."
    ),
)
def level_localizer(
    context: AssetExecutionContext,
    config: LocaliserConfig,
    settings: LssSettings,
    mlflow_tracking: MLflowTracking,
    compute: ComputeDevice,
) -> MaterializeResult:
    # torch and MLflow load here, not when the code location loads.
    import torch

    from lss_pipeline.core.localise.run import fit_config_for, train_localiser

    cfg = settings.get()
    category = context.partition_key
    device = compute.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    fit = fit_config_for(
        cfg.profile_name, category, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        seed=config.seed, device=device,
    )  # fmt: skip
    mlflow_tracking.configure(cfg)
    result = train_localiser(
        cfg,
        category,
        fit,
        tags={
            "dagster_run_id": context.run.run_id,
            "dagster_partition_key": category,
            "asset_version": LEVEL_LOCALIZER_VERSION,
            "profile": cfg.profile_name,
        },
        log=context.log,
    )
    row = result.summary_row
    summary = result.summary
    metrics_md = markdown_rows(
        ["measure", "value"],
        [[k, f"{v:.3f}" if isinstance(v, float) else str(v)] for k, v in row.items() if k != "category"],
    )
    run_url = (
        mlflow_tracking.run_url(result.experiment_id, result.mlflow_run_id)
        if result.experiment_id and result.mlflow_run_id
        else ""
    )
    return MaterializeResult(
        metadata={
            "test_in_plane_median_mm": row.get("in_plane_median_mm"),
            "test_in_plane_p90_mm": row.get("in_plane_p90_mm"),
            "test_through_plane_median_mm": row.get("through_plane_median_mm"),
            "test_exact_slice_share": row.get("exact_slice_share"),
            "test_within_half_window_share": row.get("within_half_window_share"),
            "test_level_accuracy": row.get("level_accuracy"),
            "test_points": row.get("points", 0),
            "localisation": MetadataValue.md(metrics_md),
            "levels_from": summary["levels_from"],
            "train_canvases": summary["n_train_canvases"],
            "fit_seconds": round(summary["fit_seconds"], 1),
            "registered_model": f"{result.registered_model} v{result.model_version}",
            "mlflow_run_id": result.mlflow_run_id or "",
            "mlflow_run": MetadataValue.url(run_url) if run_url else "",
            "localisation_table": MetadataValue.path(str(cfg.paths.localisation_table)),
            "errors": MetadataValue.path(str(cfg.paths.localiser_errors(category))),
        }
    )
