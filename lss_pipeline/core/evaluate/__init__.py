"""Evaluation of the trained grid: metrics, champions, calibration, the report.

``run.evaluate`` is the one entry point (the ``evaluation_report`` asset calls it): it loads every
trained partition once (``load``), decides the ``champion`` aliases (``champions``), and writes the
report (``report``: Markdown + self-contained HTML + metrics tables). Nothing here imports Dagster.
"""
