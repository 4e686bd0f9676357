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

import json
import logging
import os
import signal
from contextlib import suppress
from copy import deepcopy
from functools import partial

import multiprocess  # datatrove's dill-based multiprocessing: pickles its pipeline steps
from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import MetricStatsDict, PipelineStats, Stats

__all__ = ["WorkerPool", "run_tasks", "stats_from_json"]

log = logging.getLogger(__name__)


def run_tasks(executor: LocalPipelineExecutor, pool: WorkerPool | None = None) -> PipelineStats:
    """Run every task of `executor`, `executor.workers` at a time, and merge their stats.

    Same results as `executor.run()` (per-task `stats/*.json`, merged `stats.json` and
    `executor.json` in its logging folder), but with workers that are the caller's own
    children and are all gone when this returns or raises.

    With `executor.skip_completed`, tasks that a previous run completed (datatrove's
    `completions/<rank>` marker, written after a task's outputs are closed) are not run again
    and their saved `stats/<rank>.json` is summed instead; a task killed before its marker
    runs again from the start and overwrites what it had written.

    Args:
        executor: the tasks to run; `depends` and `local_tasks` are ignored.
        pool: workers to run them in (shared by several executors); by default a pool of
            `executor.workers` is started and stopped for this call.

    Returns:
        The stats of all tasks, summed.

    Raises:
        Exception: the first exception raised by a task, after every worker has exited.
    """
    ranks = [r for r in range(executor.world_size) if not executor.is_rank_completed(r)]
    done = sorted(set(range(executor.world_size)) - set(ranks))
    if done:
        log.info("%s: skipping %d completed tasks", executor.logging_dir.path, len(done))
    parts = [_saved_stats(executor, rank) for rank in done]
    workers = min(executor.workers, len(ranks))
    if not ranks:
        pass
    elif workers <= 1:
        parts += _run_in_process(executor, ranks)
    elif pool is not None:
        parts += pool.run(executor, ranks)
    else:
        with WorkerPool(workers) as own:
            parts += own.run(executor, ranks)
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


class WorkerPool:
    """Spawned worker processes that run the tasks of one or more executors.

    A pipeline of stages shares one pool, so each worker imports datatrove, spaCy and the
    rest once, not once per stage. Each task gets its own unpickled copy of its executor, so
    no step state leaks between tasks. On any error (KeyboardInterrupt included) every worker
    and its process group (extractor sandboxes) is killed before the exception propagates.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._pool is None:
            return
        if exc_type is None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        else:
            self._kill()

    def run(self, executor: LocalPipelineExecutor, ranks: list[int]) -> list[PipelineStats]:
        """Run `ranks` of `executor`; return their stats (in completion order)."""
        executor.save_executor_as_json()
        if self._pool is None:
            # "spawn": each worker is a direct child of this process, so terminate() reaches it.
            context = multiprocess.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_own_process_group)
        try:
            return list(
                self._pool.imap_unordered(partial(_run_task, executor, self.workers), ranks)
            )
        except BaseException:
            self._kill()
            raise

    def _kill(self) -> None:
        log.debug("a task failed: killing %d workers and their children", self.workers)
        # terminate() SIGTERMs the workers only; their sandboxes share each worker's process
        # group, so they go with the group afterwards (SIGKILLing the workers themselves
        # first can catch one holding the task queue's lock and deadlock terminate()).
        # Only this pool's workers: another child of the caller may lead a group of its own.
        pool, self._pool = self._pool, None
        leaders = [worker.pid for worker in pool._pool]
        pool.terminate()
        _kill_groups(leaders)
        pool.join()


def _saved_stats(executor: LocalPipelineExecutor, rank: int) -> PipelineStats:
    with executor.logging_dir.open(f"stats/{rank:05d}.json", "r") as f:
        return stats_from_json(json.load(f))


def stats_from_json(data: list[dict]) -> PipelineStats:
    """A task's saved `stats/<rank>.json` as PipelineStats that add up.

    datatrove's `PipelineStats.from_json` leaves each counter as the saved int/dict instead
    of a MetricStats, so such stats cannot be summed or read as `.total`.
    """
    steps = []
    for step in data:
        stats = Stats.from_dict(step)
        stats.stats = MetricStatsDict.from_dict(step["stats"])
        steps.append(stats)
    return PipelineStats(steps)


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
