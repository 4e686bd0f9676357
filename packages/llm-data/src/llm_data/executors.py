"""Run curation's stages on datatrove's local, Slurm or Ray executor.

A curation run is a list of `Stage`s (a datatrove pipeline, a task count and the stages it
waits for). Locally each stage runs in `llm_data.task_pool` (datatrove's local executor's
tasks, in workers that never outlive the call); on Slurm every stage becomes one
`SlurmPipelineExecutor` job array submitted with `--dependency=afterok:` on the jobs of the
stages it waits for; on Ray each stage runs on `RayPipelineExecutor`, one after another.
Every executor skips the tasks a previous run completed when `skip_completed` is on
(datatrove's `logs/<stage>/completions/`).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from llm_data.config import CurationConfig
from llm_data.task_pool import WorkerPool, run_tasks, stats_from_json

__all__ = ["Stage", "read_stage_stats", "run_stages", "submit_slurm", "submit_slurm_with_finalize"]

log = logging.getLogger(__name__)


@dataclass
class Stage:
    """One datatrove pipeline run over `tasks` tasks.

    Attributes:
        name: unique; its logs, stats and completion markers are in `logs/<name>/`.
        pipeline: datatrove steps.
        tasks: datatrove's world size for this pipeline.
        after: names of the stages that must finish first (Slurm dependencies); the local and
            Ray executors run stages in list order, which must respect it.
        step_names: class names of the steps (the names of their stats rows).
    """

    name: str
    pipeline: list[PipelineStep]
    tasks: int
    after: tuple[str, ...] = ()
    step_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.step_names = [type(step).__name__ for step in self.pipeline]


def run_stages(
    stages: list[Stage], config: CurationConfig, logs: Path, pool: WorkerPool | None = None
) -> None:
    """Run `stages` in order on `config.executor` ("local" or "ray") and wait for them.

    Locally, tasks run in `pool` (shared across calls) or in a pool started per stage.
    """
    if config.executor == "ray":
        _run_ray(stages, config, logs)
        return
    for stage in stages:
        workers = min(config.workers, stage.tasks)
        executor = LocalPipelineExecutor(
            pipeline=stage.pipeline,
            tasks=stage.tasks,
            workers=workers,
            logging_dir=str(logs / stage.name),
            skip_completed=config.skip_completed,
        )
        log.info("stage %s: %d tasks, %d workers", stage.name, stage.tasks, workers)
        run_tasks(executor, pool)


def _run_ray(stages: list[Stage], config: CurationConfig, logs: Path) -> None:
    import ray  # the [ray] extra
    from datatrove.executor.ray import RayPipelineExecutor

    if not ray.is_initialized():  # curation calls this per stage: one Ray serves them all
        ray.init(
            address=config.ray.address or None,
            num_cpus=config.ray.num_cpus or None,
            include_dashboard=False,  # unused, and its processes cost a 2-core machine
        )
    for stage in stages:
        log.info("stage %s on Ray: %d tasks", stage.name, stage.tasks)
        RayPipelineExecutor(
            pipeline=stage.pipeline,
            tasks=stage.tasks,
            workers=min(config.workers, stage.tasks),
            logging_dir=str(logs / stage.name),
            skip_completed=config.skip_completed,
            cpus_per_task=config.ray.cpus_per_task,
            mem_per_cpu_gb=config.ray.mem_per_cpu_gb,
        ).run()
        incomplete = _incomplete_ranks(logs / stage.name, stage.tasks)
        if incomplete:
            raise RuntimeError(
                f"stage {stage.name} on Ray: tasks {incomplete} did not complete; see "
                f"{logs / stage.name / 'logs'}"
            )


def _incomplete_ranks(logging_dir: Path, tasks: int) -> list[int]:
    return [r for r in range(tasks) if not (logging_dir / "completions" / f"{r:05d}").is_file()]


def submit_slurm(
    stages: list[Stage], config: CurationConfig, logs: Path, submitted: dict[str, str] | None = None
) -> dict[str, str]:
    """Submit every stage as a Slurm job array (`sbatch`), chained with `afterok` dependencies.

    Args:
        stages: in an order where each stage comes after those it waits for.
        config: the Slurm settings (`config.slurm`) and `skip_completed`.
        logs: datatrove's logging folders go to `logs/<stage>/`.
        submitted: job ids of earlier submissions that `stages` may wait for.

    Returns:
        `{stage name: job id}`; `-1` for a stage whose tasks had all completed already.
    """
    from datatrove.executor.slurm import SlurmPipelineExecutor

    slurm = config.slurm
    job_ids: dict[str, str] = dict(submitted or {})
    for stage in stages:
        waits = [str(job_ids[name]) for name in stage.after if str(job_ids[name]) != "-1"]
        executor = SlurmPipelineExecutor(
            pipeline=stage.pipeline,
            tasks=stage.tasks,
            time=slurm.time,
            partition=slurm.partition,
            cpus_per_task=slurm.cpus_per_task,
            mem_per_cpu_gb=slurm.mem_per_cpu_gb,
            job_name=f"{slurm.job_name}-{stage.name.replace('/', '-')}",
            env_command=slurm.env_command or None,
            sbatch_args=dict(slurm.sbatch_args),
            depends_job_id=":".join(waits) or None,
            logging_dir=str(logs / stage.name),
            slurm_logs_folder=str(Path(slurm.logs_dir) / stage.name) if slurm.logs_dir else None,
            skip_completed=config.skip_completed,
            mail_type="NONE",
        )
        executor.run()  # not inside a Slurm task: writes the sbatch script and submits it
        job_ids[stage.name] = str(executor.job_id)
        log.info(
            "stage %s submitted as Slurm job %s (after %s)", stage.name, executor.job_id, waits
        )
    ours = {s.name: job_ids[s.name] for s in stages}
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "slurm_jobs.json").write_text(json.dumps(ours, indent=2))
    return ours


def submit_slurm_with_finalize(
    stages: list[Stage], final: Stage, config: CurationConfig, root: Path, logs: Path, out: Path
) -> dict:
    """Submit `stages` and, after them, the one-task `final` job that renames the work folder
    `root` to `out`; the `{"executor": "slurm", "jobs", "work_dir"}` result of curation and
    shards."""
    jobs = submit_slurm(stages, config, logs)
    # The finalize job's own logs cannot live in the folder it renames. They are cleared first:
    # a completion marker of an earlier run's finalize would make datatrove skip this one.
    final_logs = out.parent / f".{out.name}.finalize"
    shutil.rmtree(final_logs, ignore_errors=True)
    jobs |= submit_slurm([final], config, final_logs, jobs)
    return {"executor": "slurm", "jobs": jobs, "work_dir": str(root)}


def read_stage_stats(logging_dir: Path) -> PipelineStats:
    """Sum the per-task stats (`stats/<rank>.json`) a stage's tasks saved, on any executor."""
    total = PipelineStats()
    for path in sorted((logging_dir / "stats").glob("*.json")):
        total += stats_from_json(json.loads(path.read_text()))
    return total
