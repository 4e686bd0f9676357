"""Run a datatrove pipeline's tasks in worker processes that never outlive the call.

datatrove's `LocalPipelineExecutor.run` starts its pool through a forkserver: the pool workers
are children of the forkserver, not of the caller, and when a task raises, the pool's
`terminate()` can leave a worker (and so the forkserver and the resource tracker) running.
Worse, each worker's extractor runs in a sandbox process (datatrove's `ExtractorSandbox`) that
holds both ends of its own pipe, so it never notices its parent is gone. These processes inherit
the caller's stdout, so `pretrain | tee log` never sees EOF and hangs.
Here the workers are spawned directly by the caller, each leading a process group that its
sandboxes inherit; on any error (KeyboardInterrupt included) those groups are killed before the
exception propagates.
"""

from __future__ import annotations

import logging
import os
import signal
from contextlib import suppress
from copy import deepcopy
from functools import partial

import multiprocess  # datatrove's dill-based multiprocessing: pickles its pipeline steps
from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import PipelineStats

__all__ = ["run_tasks"]

log = logging.getLogger(__name__)


def run_tasks(executor: LocalPipelineExecutor) -> PipelineStats:
    """Run every task of `executor`, `executor.workers` at a time, and merge their stats.

    Same results as `executor.run()` (per-task `stats/*.json`, merged `stats.json` and
    `executor.json` in its logging folder), but with workers that are the caller's own
    children and are all gone when this returns or raises.

    Args:
        executor: the tasks to run; `skip_completed`, `depends` and `local_tasks` are ignored
            (every task runs).

    Returns:
        The stats of all tasks, summed.

    Raises:
        Exception: the first exception raised by a task, after every worker has exited.
    """
    ranks = list(range(executor.world_size))
    workers = min(executor.workers, len(ranks))
    if workers <= 1:
        parts = _run_in_process(executor, ranks)
    else:
        parts = _run_in_pool(executor, workers, ranks)
    stats = sum(parts, start=PipelineStats())
    with executor.logging_dir.open("stats.json", "wt") as f:
        stats.save_to_disk(f)
    return stats


def _run_in_process(executor: LocalPipelineExecutor, ranks: list[int]) -> list[PipelineStats]:
    executor.save_executor_as_json()
    pipeline, parts = executor.pipeline, []
    try:
        for rank in ranks:
            # Steps keep state (counters, dedup hashes): every task starts from fresh copies.
            executor.pipeline = deepcopy(pipeline)
            parts.append(_run_task(executor, 1, rank))
    finally:
        executor.pipeline = pipeline
    return parts


def _run_in_pool(
    executor: LocalPipelineExecutor, workers: int, ranks: list[int]
) -> list[PipelineStats]:
    executor.save_executor_as_json()
    # "spawn": each worker is a direct child of this process, so terminate() reaches it.
    pool = multiprocess.get_context("spawn").Pool(workers, initializer=_own_process_group)
    try:
        parts = list(pool.imap_unordered(partial(_run_task, executor, workers), ranks))
        pool.close()
    except BaseException:
        log.debug("a task failed: killing %d workers and their children", workers)
        # terminate() SIGTERMs the workers only; their sandboxes share each worker's process
        # group, so they go with the group afterwards (SIGKILLing the workers themselves
        # first can catch one holding the task queue's lock and deadlock terminate()).
        # Only this pool's workers: another child of the caller may lead a group of its own.
        leaders = [worker.pid for worker in pool._pool]
        pool.terminate()
        _kill_groups(leaders)
        raise
    finally:
        pool.join()
    return parts


def _own_process_group() -> None:
    # Pool initializer: the worker leads a new process group that its sandboxes inherit.
    os.setpgid(0, 0)


def _kill_groups(leaders: list[int]) -> None:
    """SIGKILL the process groups led by `leaders` (a group outlives its leader)."""
    for pgid in leaders:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _run_task(executor: LocalPipelineExecutor, workers: int, rank: int) -> PipelineStats:
    # datatrove prints a task's logs to the console only for local_rank 0.
    return executor._run_for_rank(rank, local_rank=rank % workers)
