"""`trained_model` [arch × category]: a timm model per condition category, one MLflow run each."""


import warnings

from dagster import (
    BetaWarning,
    AssetDep,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
)


from lss_pipeline.core.atomic import write_json
from lss_pipeline.partitions import model_partitions
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking

TRAINED_MODEL_VERSION = "1"

# Per step on Kubernetes: one GPU plus the memory/CPU a data loader needs.
GPU_STEP_K8S_CONFIG = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
        }
    },
    "pod_spec_config": {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # the mapping is the documented way to fan out by category
    _per_category = MultiToSingleDimensionPartitionMapping(partition_dimension_name="category")


class TrainingConfig(Config):
    """Empty / zero fields take the profile's value (LSS_PROFILE)."""

    timm_name: str = ""
    loss: str = "weighted_ce"  # weighted_ce | focal
    gamma: float = 2.0  # focal loss γ
    weight_scheme: str = "effective_number"  # inverse_frequency | effective_number | competition | none
    epochs: int = 0
    lr: float = 0.0
    batch_size: int = 0
    patience: int = 4
    val_fold: int = 0
    seed: int = 42
    augment: bool = True
    flip_merge: bool = False
    pretrained_path: str = ""  # a local state-dict file; nothing is downloaded


@asset(
    group_name="training",
    partitions_def=model_partitions,
    deps=[
        AssetDep("level_crops", partition_mapping=_per_category),
        AssetDep("class_weights", partition_mapping=_per_category),
        "data_splits",
    ],
    kinds={"pytorch", "mlflow"},
    pool="gpu",
    op_tags={"dagster-k8s/config": GPU_STEP_K8S_CONFIG},
    code_version=TRAINED_MODEL_VERSION,
    description="timm model (ConvNeXt / ResNet / Swin) for one category; checkpoint, OOF probabilities, MLflow run + registered version.",
)
def trained_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    settings: LssSettings,
    mlflow_tracking: MLflowTracking,
    compute: ComputeDevice,
) -> MaterializeResult:
    # torch/timm/MLflow load here, not when the code location loads (UI start-up, every step process).
    import torch

    from lss_pipeline.core import tracking
    from lss_pipeline.core.training import TrainConfig, class_weights_for, train_model

    cfg = settings.get()
    keys = context.partition_key.keys_by_dimension
    arch, category = keys["arch"], keys["category"]
    overrides = {
        k: v
        for k, v in dict(
            timm_name=config.timm_name, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size
        ).items()
        if v
    }
    train_config = TrainConfig.from_profile(
        cfg.profile_name,
        arch,
        category,
        loss=config.loss,
        gamma=config.gamma,
        weight_scheme=config.weight_scheme,
        patience=config.patience,
        val_fold=config.val_fold,
        seed=config.seed,
        augment=config.augment,
        flip_merge=config.flip_merge,
        pretrained_path=config.pretrained_path or None,
        device=compute.device,
        precision=compute.precision,
        channels_last=compute.channels_last if compute.device != "cpu" else None,
        **overrides,
    )
    crops_dir = cfg.crops_dir / category
    weights = class_weights_for(crops_dir / "class_weights.json", train_config.val_fold, train_config.weight_scheme)
    out_dir = cfg.models_dir / arch / category

    mlflow_tracking.configure(cfg)
    experiment = f"lss-{category}"
    registered_name = f"lss-{category}"
    tags = {
        "dagster_run_id": context.run.run_id,
        "dagster_partition_key": context.partition_key,
        "asset_version": TRAINED_MODEL_VERSION,
        "arch": arch,
        "category": category,
        "profile": cfg.profile_name,
    }

    def on_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        context.log.info(
            f"{arch}/{category} epoch {epoch + 1}/{epochs}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        )

    # The run ends FAILED when anything below raises.
    with tracking.start_run(experiment, run_name=f"{arch}-{category}", tags=tags) as run:
        tracking.log_params({"profile": cfg.profile_name, "weights": weights})
        result = train_model(
            train_config,
            crops_dir / "crops.npy",
            crops_dir / "index.parquet",
            weights,
            out_dir,
            tracker=run,
            progress=on_epoch,
        )
        input_example = torch.zeros(
            1, train_config.in_chans, train_config.crop_px, train_config.crop_px
        ).numpy()
        version = tracking.log_and_register_model(result.model, input_example, registered_name)
        experiment_id = tracking.ensure_experiment(experiment)
        summary = {
            "arch": arch,
            "timm_name": train_config.timm_name,
            "category": category,
            "loss": train_config.loss,
            "weight_scheme": train_config.weight_scheme,
            "gamma": train_config.gamma,
            "val_fold": train_config.val_fold,
            "mlflow_run_id": run.run_id,
            "mlflow_experiment_id": experiment_id,
            "registered_model": registered_name,
            "model_version": version,
            "val_macro_recall": result.best_val_macro_recall,
            **result.summary(),
        }
        summary_path = write_json(summary, out_dir / "summary.json")

    url = mlflow_tracking.run_url(experiment_id, run.run_id)
    history_md = "| epoch | train loss | val loss | val macro recall |\n|---|---|---|---|\n" + "\n".join(
        f"| {i + 1} | {h.get('train_loss', float('nan')):.4f} | {h.get('val_loss', float('nan')):.4f} "
        f"| {h.get('val_macro_recall', float('nan')):.4f} |"
        for i, h in enumerate(result.history)
    )
    return MaterializeResult(
        metadata={
            "val_macro_recall": result.best_val_macro_recall,
            "best_epoch": result.best_epoch + 1,
            "epochs_run": result.epochs_run,
            "resumed_from_epoch": result.resumed_from_epoch if result.resumed_from_epoch is not None else -1,
            "timm_name": train_config.timm_name,
            "params": result.params,
            "GMACs": round(result.macs / 1e9, 4),
            "train_images_per_s": round(result.train_images_per_s, 1),
            "device": result.device,
            "precision": result.precision,
            "mlflow_run_id": run.run_id,
            "mlflow_run": MetadataValue.url(url),
            "registered_model": f"{registered_name} v{version}",
            "history": MetadataValue.md(history_md),
            "checkpoint": MetadataValue.path(str(result.best_path)),
            "oof_predictions": MetadataValue.path(str(result.oof_path)),
            "summary": MetadataValue.path(str(summary_path)),
        }
    )
