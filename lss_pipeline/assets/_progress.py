"""Turn core progress callbacks into Dagster log lines (about every 10 %)."""

from collections.abc import Callable


def log_progress(context, what: str, every_fraction: float = 0.1) -> Callable[[int, int], None]:
    last_logged = {"fraction": -1.0}

    def report(done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if fraction >= 1.0 or fraction - last_logged["fraction"] >= every_fraction:
            last_logged["fraction"] = fraction
            context.log.info(f"{what}: {done}/{total} ({fraction:.0%})")

    return report
