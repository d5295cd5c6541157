"""Training of the severity graders: data, loop, checkpoints, fold ensemble, MLflow run.

``run.train_partition`` trains one architecture x category (every fold, test predictions,
registered ensemble); the modules below it each hold one idea. Nothing here imports Dagster.
"""
