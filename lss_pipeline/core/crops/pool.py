"""Run per-study crop work in this process or in a process pool, in task order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


def pool_context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    """forkserver with the crop modules preloaded: workers fork from a clean single-threaded
    server (safe when the caller runs threads, e.g. torch or Dagster) and skip re-importing
    numpy/cv2/pydicom and the caller's ``__main__``, which spawn pays once per worker."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")


def run_in_pool(
    work: Callable[[Task], Result], tasks: Sequence[Task], workers: int, *, preload: Sequence[str] = ()
) -> Iterator[Result]:
    """``work(task)`` for each task, results in task order (so outputs never depend on scheduling).

    ``preload``: modules the fork server imports once, so workers start without importing them.
    """
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield work(task)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(preload)) as pool:
        yield from pool.map(work, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
