"""Dagster assets: one asset = one call into `lss_pipeline.core` plus metadata for the UI."""
