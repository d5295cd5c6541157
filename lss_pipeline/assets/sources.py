"""`label_files`: the Kaggle label CSVs, observed rather than built.

Its data version is the content hash of train.csv, train_label_coordinates.csv and
train_series_descriptions.csv (``settings.paths.label_files``). A new hash is what "new labels"
means to the automation (lss_pipeline/automation.py): everything downstream is rebuilt once.
"""

import warnings

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BetaWarning,
    DataVersion,
    Failure,
    MetadataValue,
    ObserveResult,
    multi_observable_source_asset,
)

from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.core.markdown import markdown_rows
from lss_pipeline.resources import LssSettings

LABEL_FILES_KEY = AssetKey("label_files")

with warnings.catch_warnings():
    # Observable source assets are Dagster's documented way to give external files a data
    # version; the decorator is marked beta, which is not news at every import.
    warnings.simplefilter("ignore", BetaWarning)

    @multi_observable_source_asset(
        specs=[
            AssetSpec(
                LABEL_FILES_KEY,
                group_name="ingest",
                kinds={"csv"},
                description=(
                    "The label CSVs of the RSNA folder (train.csv, train_label_coordinates.csv, "
                    "train_series_descriptions.csv). Data version = their content hash; a new "
                    "hash rebuilds everything downstream."
                ),
            )
        ],
    )
    def label_files(context: AssetExecutionContext, settings: LssSettings):
        files = settings.get().paths.label_files
        snapshot = read_label_snapshot(files)
        if not snapshot.ok or snapshot.labels_hash is None:
            # Nothing recorded: the last good data version stays the current one.
            raise Failure(description=snapshot.reason)
        context.log.info(f"label files sha256 {snapshot.labels_hash[:12]} in {files[0].parent}")
        per_file = [(f.name, f.size, f.sha256[:16]) for f in snapshot.files]
        yield ObserveResult(
            asset_key=LABEL_FILES_KEY,
            data_version=DataVersion(snapshot.labels_hash),
            metadata={
                "folder": MetadataValue.path(str(files[0].parent)),
                "sha256": snapshot.labels_hash,
                "files": MetadataValue.md(markdown_rows(("file", "bytes", "sha256"), per_file)),
            },
        )
