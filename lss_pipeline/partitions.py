"""Partition definitions: category for crops/weights, architecture × category for models."""

from dagster import MultiPartitionsDefinition, StaticPartitionsDefinition

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES

category_partitions = StaticPartitionsDefinition(list(CATEGORIES))
architecture_partitions = StaticPartitionsDefinition(list(ARCHITECTURES))
model_partitions = MultiPartitionsDefinition(
    {"arch": architecture_partitions, "category": category_partitions}
)


def model_partition_key(arch: str, category: str) -> str:
    """The multi-partition key string Dagster uses (dimensions in alphabetical order)."""
    return f"{arch}|{category}"
