"""Plain Python/torch core of lss_pipeline. Nothing under this package imports Dagster."""
