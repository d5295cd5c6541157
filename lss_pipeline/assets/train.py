"""`trained_model` [arch × category]: every cv fold of a timm model, a fold ensemble registered in MLflow.

The asset is one call into ``core/train/run.train_partition`` plus metadata for the UI; its check
tests the model against chance on its out-of-fold validation rows.
"""

import warnings
from typing import Literal

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    BetaWarning,
    Config,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    PreviewWarning,
    asset,
    asset_check,
)

from lss_pipeline.partitions import model_partitions
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking

TRAINED_MODEL_VERSION = "3"

# Per step on Kubernetes: one GPU plus the memory/CPU a data loader needs (the full profile's 6
# loader workers and the training process).
GPU_STEP_K8S_CONFIG = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "1"},
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


WeightScheme = Literal["inverse_frequency", "effective_number", "competition", "none"]


class TrainingConfig(Config):
    """Empty / zero fields take the profile's value (LSS_PROFILE)."""

    timm_name: str = ""
    loss: Literal["weighted_ce", "focal"] = "weighted_ce"
    gamma: float = 2.0  # focal loss γ
    weight_scheme: Literal["inverse_frequency", "effective_number", "competition", "none"] = (
        "effective_number"
    )
    epochs: int = 0
    lr: float = 0.0
    batch_size: int = 0
    patience: int = 4
    folds: int = 0  # how many of the K cv folds to train (0: the profile's; every fold in `full`)
    seed: int = 42
    augment: bool = True
    # mirror right-side crops to look left (nfs, sbs); None: the profile's (on for both)
    flip_merge: bool | None = None
    # also train the other loss (weighted_ce <-> focal) as a variant beside this partition, logged in
    # MLflow for the report's loss comparison; None: the profile's list (demo: convnext|scs; full: all)
    compare_loss: bool | None = None
    # none | timm (timm's own weights: the Hugging Face hub, or its local cache when HF_HUB_OFFLINE=1)
    # | a weights file; empty: the profile's (demo: none, full: timm)
    pretrained: str = ""


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
    description=(
        "timm model (ConvNeXt / ResNet / Swin) for one category, one model per cv fold: checkpoints, "
        "out-of-fold and test-split probabilities, an MLflow run with a nested run per fold, and the "
        "fold ensemble registered as lss-{category}."
    ),
)
def trained_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    settings: LssSettings,
    mlflow_tracking: MLflowTracking,
    compute: ComputeDevice,
) -> MaterializeResult:
    # torch/timm/MLflow load here, not when the code location loads (UI start-up, every step process).
    from lss_pipeline.core.train.compare import comparison_markdown, train_other_loss
    from lss_pipeline.core.train.config import TrainConfig
    from lss_pipeline.core.train.run import train_partition

    cfg = settings.get()
    keys = context.partition_key.keys_by_dimension
    arch, category = keys["arch"], keys["category"]
    profile_values = dict(
        timm_name=config.timm_name,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        pretrained=config.pretrained,
    )
    train_config = TrainConfig.from_profile(
        cfg.profile_name,
        arch,
        category,
        loss=config.loss,
        gamma=config.gamma,
        weight_scheme=config.weight_scheme,
        patience=config.patience,
        seed=config.seed,
        augment=config.augment,
        device=compute.device,
        precision=compute.precision,
        channels_last=compute.channels_last if compute.device != "cpu" else None,
        **{k: v for k, v in profile_values.items() if v},
        **({} if config.flip_merge is None else {"flip_merge": config.flip_merge}),
    )
    mlflow_tracking.configure(cfg)
    max_folds = config.folds or cfg.profile.train_folds
    tags = {
        "dagster_run_id": context.run.run_id,
        "dagster_partition_key": context.partition_key,
        "asset_version": TRAINED_MODEL_VERSION,
        "profile": cfg.profile_name,
    }
    result = train_partition(cfg, train_config, max_folds=max_folds, tags=tags, log=context.log)
    summary = result.summary
    folds = result.folds
    compare = config.compare_loss
    if compare is None:
        compare = f"{arch}|{category}" in cfg.profile.loss_comparison
    comparison = {}
    if compare:
        entry = train_other_loss(cfg, train_config, result, max_folds=max_folds, tags=tags, log=context.log)
        comparison = {"loss_comparison": MetadataValue.md(comparison_markdown(entry))}
    run_url = mlflow_tracking.run_url(result.experiment_id, result.mlflow_run_id)
    return MaterializeResult(
        metadata={
            "oof_macro_recall": summary["oof_macro_recall"],
            "folds_trained": MetadataValue.text(f"{len(folds)} of {result.n_folds}"),
            "oof_study_share": summary["coverage"]["oof_study_share"],
            "test_rows": summary["n_test_rows"],
            "best_epochs": MetadataValue.text(", ".join(str(f.best_epoch + 1) for f in folds)),
            "epochs_run": sum(f.epochs_run for f in folds),
            "resumed": result.resumed,
            "timm_name": train_config.timm_name,
            "params": summary["params"],
            "GMACs": round(summary["gmacs"], 4),
            "train_images_per_s": round(summary["train_images_per_s"], 1),
            "device": summary["device"],
            "precision": summary["precision"],
            "mlflow_run_id": result.mlflow_run_id,
            "mlflow_run": MetadataValue.url(run_url),
            "registered_model": f"{result.registered_model} v{result.model_version}",
            "history": MetadataValue.md(result.history_markdown()),
            "oof_predictions": MetadataValue.path(str(result.oof_path)),
            "test_predictions": MetadataValue.path(str(result.test_predictions_path)),
            "summary": MetadataValue.path(str(result.summary_path)),
            **comparison,
        }
    )


class AboveChanceConfig(Config):
    alpha: float = 0.05  # one-sided significance of the permutation test


def _above_chance(
    context: AssetCheckExecutionContext, settings: LssSettings, config: AboveChanceConfig
) -> AssetCheckResult:
    import polars as pl

    from lss_pipeline.core.train.chance import chance_test

    arch, category = str(context.partition_key).split("|")  # dimensions in name order: arch|category
    oof_path = settings.get().paths.model_oof(arch, category)
    if not oof_path.is_file():
        return AssetCheckResult(
            passed=False, metadata={"reason": f"{oof_path} is missing: materialize trained_model first"}
        )
    test = chance_test(pl.read_parquet(oof_path))
    return AssetCheckResult(
        passed=test.passed(config.alpha),
        # A model at chance is a result worth reporting (the evaluation still compares it), so
        # the check does not block downstream; it flags the partition red in the UI.
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "oof_macro_recall": test.macro_recall,
            "chance_macro_recall": test.chance_macro_recall,
            "p_value": test.p_value,
            "alpha": config.alpha,
            "rows": test.n_rows,
            "rows_per_class": MetadataValue.json(test.per_class_n),
        },
    )


with warnings.catch_warnings():
    # Partitioned checks are a Dagster preview; the check is per (arch, category) like the model it tests.
    warnings.simplefilter("ignore", PreviewWarning)
    trained_model_above_chance = asset_check(
        asset=trained_model,
        name="trained_model_above_chance",
        partitions_def=model_partitions,
        description=(
            "The model beats chance on its out-of-fold validation rows: a label-permutation test of macro "
            "recall (chance = 1/3 whatever the model predicts)."
        ),
    )(_above_chance)
