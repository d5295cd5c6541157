"""Atomic writes: write to a temp file in the target folder, then rename.

A crash leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it onto ``target`` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=suffix if suffix is not None else ".tmp" + target.suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the file the mode a plain open() would (umask applied).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(df, target: str | os.PathLike) -> Path:
    """Write a polars DataFrame atomically."""
    with atomic_path(target) as tmp:
        df.write_parquet(tmp)
    return Path(target)


def write_text(text: str, target: str | os.PathLike) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(data: bytes, target: str | os.PathLike) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json(obj: Any, target: str | os.PathLike) -> Path:
    return write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", target)


def _temp_pattern(target: Path) -> str:
    """Glob of the temp files ``atomic_path`` creates beside ``target``."""
    return f".{target.name}.*.tmp{target.suffix}"


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Delete temp files a killed write of ``target`` left behind.

    Only safe while the caller holds the lock that serializes writers of ``target``.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale = sorted(target.parent.glob(_temp_pattern(target)))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_together(writers: Mapping[Path, Callable[[Path], object]]) -> list[Path]:
    """Write several files that belong together: each ``writer(temp_path)`` first, then every rename.

    If any writer fails, no target is touched. The renames follow each other directly; writers
    of the same targets must hold one lock so that two runs never interleave.
    """
    with contextlib.ExitStack() as stack:
        temps = {target: stack.enter_context(atomic_path(target)) for target in writers}
        for target, writer in writers.items():
            writer(temps[target])
    return [Path(t) for t in writers]


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written there; raise PermissionError naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"cannot write to {folder}: {exc.strerror or exc}") from exc
    return folder


@contextlib.contextmanager
def exclusive(lock_file: str | os.PathLike, what: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold a file lock (``filelock``) while ``what`` is written; one writer at a time per lock file.

    Raises TimeoutError naming ``what`` and the lock file when another writer holds it longer
    than ``timeout_s``.
    """
    from filelock import FileLock, Timeout

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout as exc:
        raise TimeoutError(
            f"another run has been writing {what} for over {timeout_s:g} s (lock {lock_file}); "
            "try again when it has finished"
        ) from exc
    try:
        yield
    finally:
        lock.release()
