"""Content hash of the label files: the data version of the `label_files` source asset.

Dagster's automation rebuilds what depends on the labels when this hash changes. The files are
read through :func:`read_label_snapshot`, which refuses to hash a file that is still being
written (its size, mtime or content changes between two reads a moment apart).

No Dagster here: usable from a notebook (``read_label_snapshot(settings.paths.label_files)``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SnapshotStatus = Literal["ok", "missing", "unstable"]

# Pause between the two reads; long enough to catch a copy in progress, short enough
# for a sensor tick.
DEFAULT_SETTLE_SECONDS = 1.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileState:
    """What one read of one label file saw."""

    name: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class LabelSnapshot:
    """Result of hashing the three label files.

    ``labels_hash`` is set only when ``status == "ok"``; otherwise ``reason`` says why
    nothing should be acted on (missing file, file still being written).
    """

    status: SnapshotStatus
    raw_dir: Path
    labels_hash: str | None = None
    reason: str | None = None
    files: tuple[FileState, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def file_state(path: Path) -> FileState:
    """Stat and sha256 of one file. Raises ``OSError`` if it cannot be read."""
    stat_before = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    stat_after = path.stat()
    # A writer appending while we hash shows up as a different size or mtime; report
    # the "after" stat so the caller's comparison between two reads catches it too.
    if (stat_before.st_size, stat_before.st_mtime_ns) != (stat_after.st_size, stat_after.st_mtime_ns):
        return FileState(path.name, -1, stat_after.st_mtime_ns, "changing")
    return FileState(path.name, stat_after.st_size, stat_after.st_mtime_ns, digest.hexdigest())


def combined_hash(states: tuple[FileState, ...]) -> str:
    """Stable sha256 over file names and content hashes (independent of mtimes)."""
    digest = hashlib.sha256()
    for state in sorted(states, key=lambda s: s.name):
        digest.update(state.name.encode("utf-8") + b"\0" + state.sha256.encode("ascii") + b"\n")
    return digest.hexdigest()


def _pause(seconds: float) -> None:
    # Module-level so tests can swap it for "append to the file meanwhile".
    time.sleep(seconds)


def _read_all(files: Sequence[Path]) -> tuple[FileState, ...]:
    return tuple(file_state(path) for path in files)


def read_label_snapshot(
    files: Sequence[str | Path], settle_seconds: float = DEFAULT_SETTLE_SECONDS
) -> LabelSnapshot:
    """Hash ``files`` (``settings.paths.label_files``) twice, ``settle_seconds`` apart.

    Returns status ``missing`` when a file is absent, ``unstable`` when a file is empty
    or changed between the two reads (half-written), else ``ok`` with ``labels_hash``.
    """
    paths = tuple(Path(f) for f in files)
    folder = paths[0].parent if paths else Path()
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        return LabelSnapshot(
            status="missing",
            raw_dir=folder,
            reason=f"label file(s) missing in {folder}: {', '.join(missing)}",
        )
    try:
        first = _read_all(paths)
        _pause(settle_seconds)
        second = _read_all(paths)
    except FileNotFoundError as exc:
        # Replaced by a rename between the is_file check and the read: try next tick.
        return LabelSnapshot(
            status="unstable", raw_dir=folder, reason=f"label file vanished while reading: {exc.filename}"
        )

    changing = [b.name for a, b in zip(first, second) if a != b or b.sha256 == "changing"]
    if changing:
        return LabelSnapshot(
            status="unstable",
            raw_dir=folder,
            reason=(
                f"label file(s) still being written in {folder} (size, mtime or content changed "
                f"between two reads {settle_seconds:g} s apart): {', '.join(changing)}"
            ),
            files=second,
        )
    empty = [s.name for s in second if s.size == 0]
    if empty:
        return LabelSnapshot(
            status="unstable",
            raw_dir=folder,
            reason=f"label file(s) empty in {folder} (still being written?): {', '.join(empty)}",
            files=second,
        )
    return LabelSnapshot(status="ok", raw_dir=folder, labels_hash=combined_hash(second), files=second)
