"""The team deployment (LSS_DEPLOYMENT=team): Dagster's instance and MLflow's store in PostgreSQL.

- ``postgres``: where the server is (LSS_PG_* variables), databases, connections.
- ``schema``: create or upgrade both schemas with Dagster's and MLflow's own migration tools.
- ``mlflow_move``: carry a lab's MLflow history from the embedded sqlite store to the server's.
"""
