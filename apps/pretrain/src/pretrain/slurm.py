"""`pretrain launch --slurm`: an sbatch script that runs the train stage on N nodes with torchrun.

One task per node starts torchrun, which starts one process per GPU; the nodes meet at a c10d
rendezvous on the job's first node. `--max-restarts` lets torchrun restart every process after
a failure (a killed rank, the step watchdog's exit), and the train stage resumes from the run's
newest valid checkpoint, so a restart costs the steps since that checkpoint, never the run.

The run directory must be on a filesystem every node sees (checkpoints are written by every
rank and read back after a restart): the script writes a token there before starting and each
node checks that it sees it, else the job stops before training.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from llm_formats import rundir as layout

__all__ = ["SlurmJob", "sbatch_script"]

RDZV_PORT = 29500
SIGNAL_LEAD_S = 120  # seconds before the time limit that Slurm sends SIGUSR1
# torchrun forwards these to its workers (its default list lacks SIGUSR1, whose default action
# would kill torchrun itself) and then waits this long for them to checkpoint before SIGKILL.
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
SHUTDOWN_TIMEOUT_S = SIGNAL_LEAD_S - 10


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

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError(
                f"--nodes and --gpus-per-node must be >= 1, got {self.nodes}, {self.gpus_per_node}"
            )
        if self.max_restarts < 0:
            raise ValueError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        for name in ("run_dir", "time", "partition", "account", "job_name"):
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
        f"#SBATCH --output={_q(f'{job.run_dir}/{layout.SLURM_LOG}')}",
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


def _pretrain_args(job: SlurmJob) -> str:
    # The hang watchdog (on by default; said here so a config cannot turn it off unseen): a
    # hung rank exits and torchrun restarts the job instead of waiting out the NCCL timeout.
    args = ["train", "train.watchdog=true", *job.overrides]
    if job.config:
        args += ["--config", str(Path(job.config).resolve())]
    if job.allow_env:
        args.append("--allow-env")
    return " ".join(_q(a) for a in args)


def sbatch_script(job: SlurmJob) -> str:
    """The sbatch script text (bash) for `job`."""
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
