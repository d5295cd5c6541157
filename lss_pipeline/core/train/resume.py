"""The marker of an unfinished partition training, and what a rerun does with it.

``paths.model_training_state`` is written when a partition's MLflow run starts and removed when its
outputs are published. A rerun that finds it resumes the run in place when config and data are
unchanged and the run is not FINISHED; otherwise the leftover runs are marked KILLED (a process
killed with ``kill -9`` cannot end its own run) and the stale fold checkpoints are removed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lss_pipeline.core.atomic import write_json
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.train import tracking
from lss_pipeline.core.train.loop import Log

STATE_VERSION = 1


def partition_fingerprint(crops_path: Path, index_path: Path, weights_path: Path) -> str:
    """What the partition trains on: crops (size + mtime), index and class weights (content)."""
    stat = crops_path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(index_path.read_bytes())
    if weights_path.is_file():
        digest.update(weights_path.read_bytes())
    return digest.hexdigest()


@dataclass
class TrainingState:
    mlflow_run_id: str  # the partition's (parent) run
    key: dict[str, Any]  # config (less val_fold) and folds
    data: str  # partition_fingerprint
    version: int = STATE_VERSION

    def write(self, path: Path) -> None:
        write_json(asdict(self), path)

    @classmethod
    def read(cls, path: Path) -> TrainingState | None:
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**raw)
        except (ValueError, TypeError):
            return None  # unreadable: treated as a leftover nothing can resume
        return state if state.version == STATE_VERSION else None

    def resumable_run(self, key: dict[str, Any], data: str) -> str | None:
        """The run to resume in place, or None when this leftover cannot be continued."""
        # Round-trip the key through JSON so tuples and lists compare alike.
        same = json.loads(json.dumps(key, default=str)) == self.key and data == self.data
        status = tracking.run_status(self.mlflow_run_id)
        return self.mlflow_run_id if same and status not in (None, "FINISHED") else None


def abandon(state: TrainingState, log: Log) -> None:
    """Mark a leftover partition run and its running fold runs KILLED."""
    if tracking.run_status(state.mlflow_run_id) is None:
        return
    killed = [
        r
        for r in [state.mlflow_run_id, *tracking.child_run_ids(state.mlflow_run_id)]
        if tracking.mark_killed(r)
    ]
    if killed:
        log.info(f"marked {len(killed)} MLflow run(s) of an interrupted training KILLED: {', '.join(killed)}")


def clear_folds(paths: Paths, arch: str, category: str, folds: list[int]) -> None:
    """Remove fold checkpoints and tables so a fresh training cannot pick them up."""
    for k in folds:
        fold_dir = paths.model_fold_dir(arch, category, k)
        for path in (
            Paths.checkpoint_last(fold_dir),
            Paths.checkpoint_best(fold_dir),
            Paths.fold_oof(fold_dir),
            Paths.fold_summary(fold_dir),
        ):
            path.unlink(missing_ok=True)
