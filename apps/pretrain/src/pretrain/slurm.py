"""`pretrain launch-slurm`: sbatch scripts for the train stage on N nodes with torchrun, or
(`--all`) for every stage as a chain of dependent jobs.

One task per node starts torchrun, which starts one process per GPU; the nodes meet at a c10d
rendezvous on the job's first node. `--max-restarts` lets torchrun restart every process after
a failure (a killed rank, the step watchdog's exit), and the train stage resumes from the run's
newest valid checkpoint, so a restart costs the steps since that checkpoint, never the run.

The run directory must be on a filesystem every node sees (checkpoints are written by every
rank and read back after a restart): the script writes a token there before starting and each
node checks that it sees it, else the job stops before training.

The chain (`chain_scripts`, `submit_chain`): one job per stage, each submitted with
`--dependency=afterok:<previous job>`: curate, tokenizer, shards and report as single-node
jobs (`data.slurm`'s partition, time, CPUs, memory, sbatch_args and env_command), train and
eval as the torchrun script above (`--partition`, `--account`, `--time`). Each job runs
`pretrain <stage> --skip-done`, which skips a stage whose record in stages.json matches (the
pipeline's make-style check), so submitting the chain again after a failed job redoes only the
failed stage and the ones after it. With `data.executor: slurm` the curate job submits
curation's datatrove job arrays and the shards job an array of `shards.tasks` tasks plus a
finalize job; each waits for its arrays (`wait_for_jobs`) before the next job starts.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from llm_formats import rundir as layout
from pretrain.rundir import RunError

__all__ = [
    "CPU_STAGES",
    "CpuJob",
    "SlurmJob",
    "chain_scripts",
    "cpu_script",
    "sbatch_script",
    "submit_chain",
    "wait_for_jobs",
]

RDZV_PORT = 29500
SIGNAL_LEAD_S = 120  # seconds before the time limit that Slurm sends SIGUSR1
# torchrun forwards these to its workers (its default list lacks SIGUSR1, whose default action
# would kill torchrun itself) and then waits this long for them to checkpoint before SIGKILL.
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
SHUTDOWN_TIMEOUT_S = SIGNAL_LEAD_S - 10
CHAIN_DIR = "slurm"  # run_dir/slurm/: the chain's scripts, job ids and logs
CPU_STAGES = ("curate", "tokenizer", "shards", "report")  # one process on one node


@dataclass
class SlurmJob:
    """What the sbatch script needs; `overrides` are the app's key=value config overrides."""

    run_dir: Path
    nodes: int
    gpus_per_node: int
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    max_restarts: int = 3
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    cpus_per_gpu: int = 8
    job_name: str = "pretrain"
    allow_env: bool = False  # pretrain --allow-env: the config file may use ${oc.env:...}
    stage: str = "train"  # or "eval": eval runs distributed too
    skip_done: bool = False  # pretrain --skip-done: a chain's job skips a finished stage
    output: str = layout.SLURM_LOG  # sbatch --output, relative to run_dir

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError(
                f"--nodes and --gpus-per-node must be >= 1, got {self.nodes}, {self.gpus_per_node}"
            )
        if self.max_restarts < 0:
            raise ValueError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        for name in ("run_dir", "time", "partition", "account", "job_name", "output"):
            _refuse_control_characters(name, getattr(self, name))


def _refuse_control_characters(name: str, value) -> None:
    """A newline in an ``#SBATCH`` value would end the comment: the rest runs as a command.
    No quoting helps there, so such values are refused."""
    if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in str(value)):
        raise ValueError(f"slurm job field {name}={str(value)!r} holds a control character")


def _q(value) -> str:
    """Every value goes into the script through here: one shell word, whatever it holds (sbatch
    reads ``#SBATCH`` values with the same quote rules)."""
    return shlex.quote(str(value))


def _headers(job: SlurmJob) -> list[str]:
    lines = [
        f"#SBATCH --job-name={_q(job.job_name)}",
        f"#SBATCH --nodes={_q(job.nodes)}",
        "#SBATCH --ntasks-per-node=1",  # one torchrun per node; it starts the per-GPU processes
        f"#SBATCH --gpus-per-node={_q(job.gpus_per_node)}",
        f"#SBATCH --cpus-per-task={_q(job.cpus_per_gpu * job.gpus_per_node)}",
        f"#SBATCH --time={_q(job.time)}",
        f"#SBATCH --output={_q(f'{job.run_dir}/{job.output}')}",
        # SIGUSR1 two minutes before the time limit. Without `B:` Slurm signals every process
        # of the job step (torchrun and its ranks), not the batch shell, which would have to
        # trap and forward it; torchrun forwards it too (--signals-to-handle below), and the
        # ranks stop after the same step, checkpoint it and exit 138 (a repeat is ignored).
        f"#SBATCH --signal=USR1@{SIGNAL_LEAD_S}",
    ]
    if job.partition:
        lines.append(f"#SBATCH --partition={_q(job.partition)}")
    if job.account:
        lines.append(f"#SBATCH --account={_q(job.account)}")
    return lines


def _pretrain_args(job: SlurmJob | CpuJob) -> str:
    args = [job.stage]
    if job.stage == "train":
        # The hang watchdog (on by default; said here so a config cannot turn it off unseen): a
        # hung rank exits and torchrun restarts the job instead of waiting out the NCCL timeout.
        args.append("train.watchdog=true")
    args += job.overrides
    if job.config:
        args += ["--config", str(Path(job.config).resolve())]
    if job.allow_env:
        args.append("--allow-env")
    if job.skip_done:
        args.append("--skip-done")
    return " ".join(_q(a) for a in args)


def sbatch_script(job: SlurmJob) -> str:
    """The sbatch script text (bash) for `job`: its stage (train or eval) under torchrun."""
    run_dir = _q(job.run_dir.resolve())
    body = f"""set -euo pipefail
RUN_DIR={run_dir}
mkdir -p "$RUN_DIR"

# Every node must see the run directory: checkpoints are written by all ranks and read back
# after a restart. A token written here must be visible from each node.
TOKEN="$RUN_DIR/.shared-fs-check-$SLURM_JOB_ID"
date > "$TOKEN"
if ! srun --ntasks-per-node=1 bash -c 'test -f "$1"' check "$TOKEN"; then  # an argument, not code
    echo "pretrain: $RUN_DIR is not on a filesystem shared by all nodes" >&2
    exit 1
fi
rm -f "$TOKEN"

HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS={_q(job.cpus_per_gpu)}
srun --ntasks-per-node=1 --kill-on-bad-exit=1 torchrun \\
    --nnodes={_q(job.nodes)} --nproc-per-node={_q(job.gpus_per_node)} \\
    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$HEAD_NODE:{RDZV_PORT}" \\
    --max-restarts={_q(job.max_restarts)} \\
    --signals-to-handle={TORCHRUN_SIGNALS} --shutdown-timeout={SHUTDOWN_TIMEOUT_S} \\
    --no-python pretrain {_pretrain_args(job)}
"""
    head = "#!/usr/bin/env bash\n# Written by `pretrain launch --slurm`; submit with `sbatch`.\n"
    return head + "\n".join(_headers(job)) + "\n\n" + body


# --- the chain: every stage as a Slurm job, each waiting on the one before -------------------


@dataclass
class CpuJob:
    """A single-node, single-process job running `pretrain <stage>` (curate, tokenizer, shards,
    report); the Slurm settings are `data.slurm`'s (llm_data.SlurmConfig)."""

    run_dir: Path
    stage: str
    job_name: str
    cpus: int = 1
    mem_per_cpu_gb: int = 2
    time: str = "24:00:00"
    partition: str | None = None
    sbatch_args: dict[str, str] = field(default_factory=dict)
    env_command: str = ""  # a shell line the config's author wrote (`source .venv/bin/activate`)
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    allow_env: bool = False
    skip_done: bool = True

    def __post_init__(self) -> None:
        if self.stage not in CPU_STAGES:
            raise ValueError(f"a CPU job runs one of {', '.join(CPU_STAGES)}, not {self.stage!r}")
        for name in ("run_dir", "time", "partition", "job_name", "env_command"):
            _refuse_control_characters(name, getattr(self, name))
        for key, value in self.sbatch_args.items():
            _refuse_control_characters(f"sbatch_args.{key}", f"{key}{value}")


def cpu_script(job: CpuJob) -> str:
    """The sbatch script text (bash) for a CPU stage's job."""
    headers = {
        "job-name": job.job_name,
        "nodes": 1,
        "ntasks": 1,
        "cpus-per-task": job.cpus,
        "mem-per-cpu": f"{job.mem_per_cpu_gb}G",
        "time": job.time,
        "output": f"{job.run_dir}/{CHAIN_DIR}/{job.stage}-%j.out",
        **({"partition": job.partition} if job.partition else {}),
        **job.sbatch_args,
    }
    lines = [f"#SBATCH --{_q(k)}={_q(v)}" for k, v in headers.items()]
    head = "#!/usr/bin/env bash\n# Written by `pretrain launch-slurm --all`; submitted by it.\n"
    body = "set -euo pipefail\n"
    if job.env_command:
        body += f"{job.env_command}\n"
    body += f"export OMP_NUM_THREADS={_q(job.cpus)}\n"
    body += f"exec pretrain {_pretrain_args(job)}\n"
    return head + "\n".join(lines) + "\n\n" + body


def chain_scripts(train: SlurmJob, cpu: dict[str, CpuJob]) -> list[tuple[str, str]]:
    """`[(stage, script text)]` in pipeline order: the CPU jobs of `cpu` and, for train and
    eval, `train`'s torchrun script with that stage (each job skips a finished stage)."""
    from pretrain.pipeline import STAGES

    scripts = []
    for stage in STAGES:
        if stage in cpu:
            scripts.append((stage, cpu_script(cpu[stage])))
            continue
        job = SlurmJob(**{**train.__dict__, "stage": stage, "skip_done": True,
                          "job_name": f"{train.job_name}-{stage}",
                          "output": f"{CHAIN_DIR}/{stage}-%j.out"})  # fmt: skip
        scripts.append((stage, sbatch_script(job)))
    return scripts


def submit_chain(run_dir: Path, scripts: list[tuple[str, Path]]) -> dict[str, str]:
    """`sbatch` each script in order, each with `--dependency=afterok:` on the one before;
    return `{stage: job id}` (also written to run_dir/slurm/jobs.json)."""
    jobs: dict[str, str] = {}
    previous = None
    for stage, script in scripts:
        command = ["sbatch", "--parsable"]
        if previous is not None:
            command.append(f"--dependency=afterok:{previous}")
        done = subprocess.run([*command, str(script)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RunError(
                f"sbatch {script} (stage {stage}) failed ({done.returncode}): {done.stderr.strip()}"
            )
        previous = jobs[stage] = done.stdout.strip().split(";")[0]  # --parsable: id[;cluster]
    (run_dir / CHAIN_DIR / "jobs.json").write_text(json.dumps(jobs, indent=2))
    return jobs


def wait_for_jobs(job_ids: list[str], poll_s: float = 30.0) -> None:
    """Return once none of `job_ids` is queued or running (`squeue`); whether they succeeded
    is for the caller to check in their outputs."""
    ids = [j for j in job_ids if j and j != "-1"]  # -1: datatrove found every task done
    while ids:
        done = subprocess.run(
            ["squeue", "--noheader", "--format=%i", f"--jobs={','.join(ids)}"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 and "Invalid job id" not in done.stderr:  # all of them gone
            raise RuntimeError(f"squeue failed ({done.returncode}): {done.stderr.strip()}")
        if done.returncode != 0 or not done.stdout.split():
            return
        time.sleep(poll_s)
