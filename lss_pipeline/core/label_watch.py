"""Content hash of the label files, and of the installed code, for retraining decisions.

The sensor retrains once per new labels hash; the schedule retrains only when the labels
hash or the code version differs from the last successful retraining. Both read the
files through :func:`read_label_snapshot`, which refuses to hash a file that is still
being written (its size, mtime or content changes between two reads a moment apart).

No Dagster here: usable from a notebook (``read_label_snapshot(Settings.from_env().raw_dir)``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lss_pipeline.core.constants import LABEL_FILES

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


def _read_all(raw_dir: Path, names: tuple[str, ...]) -> tuple[FileState, ...]:
    return tuple(file_state(raw_dir / name) for name in names)


def read_label_snapshot(
    raw_dir: str | Path,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
    names: tuple[str, ...] = LABEL_FILES,
) -> LabelSnapshot:
    """Hash the label files in ``raw_dir`` twice, ``settle_seconds`` apart.

    Returns status ``missing`` when a file is absent, ``unstable`` when a file is empty
    or changed between the two reads (half-written), else ``ok`` with ``labels_hash``.
    """
    raw_dir = Path(raw_dir)
    missing = [name for name in names if not (raw_dir / name).is_file()]
    if missing:
        return LabelSnapshot(
            status="missing",
            raw_dir=raw_dir,
            reason=f"label file(s) missing in {raw_dir}: {', '.join(missing)}",
        )
    try:
        first = _read_all(raw_dir, names)
        _pause(settle_seconds)
        second = _read_all(raw_dir, names)
    except FileNotFoundError as exc:
        # Replaced by a rename between the is_file check and the read: try next tick.
        return LabelSnapshot(
            status="unstable", raw_dir=raw_dir, reason=f"label file vanished while reading: {exc.filename}"
        )

    changing = [b.name for a, b in zip(first, second) if a != b or b.sha256 == "changing"]
    if changing:
        return LabelSnapshot(
            status="unstable",
            raw_dir=raw_dir,
            reason=(
                f"label file(s) still being written in {raw_dir} (size, mtime or content changed "
                f"between two reads {settle_seconds:g} s apart): {', '.join(changing)}"
            ),
            files=second,
        )
    empty = [s.name for s in second if s.size == 0]
    if empty:
        return LabelSnapshot(
            status="unstable",
            raw_dir=raw_dir,
            reason=f"label file(s) empty in {raw_dir} (still being written?): {', '.join(empty)}",
            files=second,
        )
    return LabelSnapshot(status="ok", raw_dir=raw_dir, labels_hash=combined_hash(second), files=second)


def code_version(package_dir: str | Path | None = None) -> str:
    """sha256 over the relative paths and contents of the package's source files.

    Defaults to the installed ``lss_pipeline`` package; used to tell whether the code
    changed since the last retraining. Byte caches and editor temp files are ignored.
    """
    if package_dir is None:
        import lss_pipeline

        package_dir = Path(lss_pipeline.__file__).resolve().parent
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise FileNotFoundError(f"package directory not found: {package_dir}")
    digest = hashlib.sha256()
    sources = sorted(
        p for p in package_dir.rglob("*")
        if p.is_file()
        and p.suffix in {".py", ".yaml", ".yml", ".json", ".toml", ".html", ".css", ".j2"}
        and "__pycache__" not in p.parts
        and not p.name.startswith(".")
    )
    for path in sources:
        rel = path.relative_to(package_dir).as_posix()
        digest.update(rel.encode("utf-8") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
