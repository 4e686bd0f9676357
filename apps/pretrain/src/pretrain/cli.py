"""`pretrain`: run the whole pipeline, or one stage of it, from a YAML config plus overrides.

pretrain                              # every stage with the default config
pretrain train train.steps=50         # one stage, with an override
pretrain curate tokenizer shards      # several stages, in pipeline order
torchrun --nproc-per-node 2 --no-python pretrain train   # the train stage on 2 processes
torchrun --nproc-per-node 2 --no-python pretrain eval    # eval shared by 2 processes
pretrain train --config my.yaml train.steps=50   # options go before or after the stage
pretrain show-config                  # print the resolved config and exit
pretrain plan model_preset=llama3-70b plan.world_size=256 run.replicas=8 shards.seq_len=8192
                                      # simulate the first train step on 256 fake ranks
"""

from __future__ import annotations

import argparse
import logging
import sys

from llm_formats import rundir as layout
from pretrain.config import load_pretrain_config
from pretrain.loading import ConfigError
from pretrain.pipeline import STAGES, run_pipeline
from pretrain.rundir import RunError

log = logging.getLogger("pretrain")
_CHATTY_LOGGERS = ("trafilatura", "htmldate", "courlan", "jieba")


_EPILOG = """\
Overrides are key.sub=value pairs, e.g. train.steps=100 model.n_layers=2. A key given twice in
one mapping of a --config file is an error naming it and its lines; so is a ${...} interpolation
there (${oc.env:NAME} would copy a secret into config.yaml) unless --allow-env.

The run directory is runs/<run.name>. A stage whose config sections and outputs are unchanged is
skipped; a stage run alone always runs. One pretrain at a time per run directory: a second one
fails at once, naming the holder (pid, host, start) of <run>/pretrain.lock.

Training resumes from the newest valid checkpoint. Raising train.steps continues a finished run
(the LR schedule is recomputed for the new length, logged); settings that do not change the
updates (log_every, checkpoint_every, keep_checkpoints, eval_every, ...) keep the checkpoints,
and how curation runs (data.workers, data.executor, data.slurm, data.ray, ...) keeps every stage.
Changing what the checkpoints were trained with (data, tokenizer, shards, loader, model, lr,
seed, ...) is an error naming each change, as is a run whose checkpoints are all corrupt: use
another run.name, or --restart to delete the run's checkpoints and metrics and train from step 0.

model_preset gives the preset's model; model.* keys apply on top. model.vocab_size and
model.max_seq_len follow tokenizer.vocab_size and shards.seq_len. Stages other than curate need
an existing run; eval scores the newest checkpoint (an error if it is corrupt) and records its
step in eval.json.

Under torchrun (WORLD_SIZE > 1) only the train and eval stages run: one process per device.
Train: FSDP2 over all of them, the same weights at start as one process, each micro-batch per
rank (the global batch is loader.batch_size x grad_accum_steps x WORLD_SIZE, recorded in
stages.json); rank 0 writes metrics, run.json and stages.json, every rank its checkpoint shard.
Eval: every rank loads the weights only, in eval.precision (whole, or FSDP2-sharded per
eval.shard), scores a share of the requests, and rank 0 writes eval/ and eval.json, the same
scores as one process. Run curate, tokenizer and shards before them and report after them,
each in one process.
`pretrain launch-slurm --nodes N --gpus-per-node G [--submit]` writes <run>/train.sbatch: torchrun
on every node, c10d rendezvous on the first, --max-restarts, resume from the newest checkpoint.
With --all it writes <run>/slurm/<stage>.sbatch for every stage and, with --submit, submits them
as a chain (each --dependency=afterok on the one before; ids in <run>/slurm/jobs.json, logs in
<run>/slurm/<stage>-<id>.out): curate, tokenizer, shards and report on one node each, train
and eval under torchrun on N nodes. Each job runs `pretrain <stage> --skip-done`: submitting the
chain again after a failed job skips the finished stages. With data.executor=slurm the curate
and shards jobs submit their datatrove job arrays (shards: shards.tasks tasks) and wait for them.

`pretrain plan` simulates the train stage's first step (mesh, FSDP2, init, forward, backward,
optimizer, checkpoint plan) on plan.world_size fake ranks and fake tensors, in one CPU process:
rank 0's peak memory by category beside tools/memory.py's estimate, collectives and bytes per
step. It needs no run directory; the model keeps its preset's vocab_size and max_seq_len, and
shards.seq_len, loader.batch_size and train.* set the step. --out FILE writes the markdown.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pretrain",
        description="Curate -> tokenizer -> shards -> train -> eval -> report, on one config.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    choices = ["all", *STAGES, "show-config", "launch-slurm", "plan"]
    parser.add_argument(
        "stage", nargs="?", default="all", help=f"one or more of {', '.join(choices)}"
    )
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    parser.add_argument(
        "--config",
        help="YAML file laid over the defaults (the sample run): it names only the keys it "
        "changes; `pretrain show-config` prints the result",
    )
    parser.add_argument(
        "--allow-env",
        action="store_true",
        help="let the --config file use OmegaConf interpolations (${oc.env:NAME}, ${other.key}); "
        "off by default: a downloaded config must not copy environment variables (secrets) into "
        "the config, and so into the config.yaml a run records",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="delete this run's checkpoints, metrics and eval results (logged) and train again "
        "from step 0; needs the train stage",
    )
    parser.add_argument(
        "--skip-done",
        action="store_true",
        help="skip a stage whose record in stages.json is up to date even when it is named "
        "alone (each job of `launch-slurm --all` runs its stage so)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--out", help="plan: also write the tables as markdown to this file (= plan.out)"
    )
    slurm = parser.add_argument_group(
        "launch-slurm (writes <run>/train.sbatch; with --all <run>/slurm/<stage>.sbatch)"
    )
    slurm.add_argument(
        "--all",
        action="store_true",
        help="every stage as a chain of jobs, each after the one before (afterok); the CPU "
        "stages' jobs take data.slurm's partition, time, cpus_per_task, mem_per_cpu_gb, "
        "sbatch_args and env_command",
    )
    slurm.add_argument("--nodes", type=int, default=1)
    slurm.add_argument("--gpus-per-node", type=int, default=8)
    slurm.add_argument("--max-restarts", type=int, default=3, help="torchrun restarts")
    slurm.add_argument("--time", default="24:00:00", help="sbatch --time")
    slurm.add_argument("--partition", help="sbatch --partition")
    slurm.add_argument("--account", help="sbatch --account")
    slurm.add_argument("--submit", action="store_true", help="run sbatch on the script")
    args = parser.parse_intermixed_args(argv)  # options before or after the stage
    if "=" in args.stage:  # `pretrain train.steps=5` means all stages with an override
        args.overrides.insert(0, args.stage)
        args.stage = "all"
    if args.stage not in choices:
        parser.error(f"unknown stage {args.stage!r}; choose from {', '.join(choices)}")
    args.stages = [args.stage]
    while args.overrides and "=" not in args.overrides[0]:  # `pretrain curate tokenizer ...`
        name = args.overrides.pop(0)
        if name not in STAGES:
            parser.error(f"unknown stage {name!r}; choose from {', '.join(STAGES)}")
        args.stages.append(name)
    if len(args.stages) > 1 and not set(args.stages) <= set(STAGES):
        parser.error(f"{' '.join(args.stages)}: list stages from {', '.join(STAGES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:  # per-page extractor chatter; datatrove counts what was dropped
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        if args.stage == "plan":
            return plan(args)
        config = load_pretrain_config(args.config, args.overrides, allow_env=args.allow_env)
        if args.stage == "launch-slurm":
            return launch_slurm(config, args)
        if args.stage == "show-config":
            from pretrain.loading import to_yaml

            print(to_yaml(config), end="")
            return 0
        stages = list(STAGES) if args.stage == "all" else sorted(args.stages, key=STAGES.index)
        run_dir = run_pipeline(config, stages, restart=args.restart, skip_done=args.skip_done)
    except ConfigError as e:
        print(f"pretrain: config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RunError) as e:
        print(f"pretrain: error: {e}", file=sys.stderr)
        return 1
    log.info("done: %s", run_dir)
    return 0


def plan(args: argparse.Namespace) -> int:
    """Simulate the train stage's first step on plan.world_size fake ranks and print the tables.

    No run directory, tokenizer or shards: the model keeps its preset's vocabulary
    (``sized=False``).
    """
    from pretrain.plan import run_plan

    overrides = [*args.overrides, *([f"plan.out={args.out}"] if args.out else [])]
    config = load_pretrain_config(args.config, overrides, allow_env=args.allow_env, sized=False)
    command = " ".join(
        ["pretrain", "plan", *args.overrides] + (["--out", args.out] if args.out else [])
    )
    print(run_plan(config, command), end="")
    return 0


def launch_slurm(config, args: argparse.Namespace) -> int:
    """Write the sbatch script that trains this run on `--nodes` nodes (or, with --all, the
    chain of every stage's job); submit it if asked."""
    import shutil
    import subprocess

    from pretrain.rundir import require_existing_run
    from pretrain.slurm import SlurmJob, sbatch_script

    if args.submit and shutil.which("sbatch") is None:
        raise RunError("--submit: sbatch is not on PATH (is this a Slurm login node?)")
    run_dir = layout.run_dir(config.run.root, config.run.name).resolve()
    if not args.all:
        require_existing_run(run_dir)  # curate, tokenizer and shards come first, in one process
    job = SlurmJob(run_dir, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                   config=args.config, overrides=args.overrides, max_restarts=args.max_restarts,
                   time=args.time, partition=args.partition, account=args.account,
                   job_name=f"pretrain-{config.run.name}", allow_env=args.allow_env)  # fmt: skip
    if args.all:
        return _launch_chain(config, args, job)
    script = run_dir / layout.SLURM_SCRIPT
    script.write_text(sbatch_script(job))
    print(f"wrote {script}")
    if args.submit:
        subprocess.run(["sbatch", str(script)], check=True)
    return 0


def _launch_chain(config, args: argparse.Namespace, train) -> int:
    """`launch-slurm --all`: write run_dir/slurm/<stage>.sbatch for every stage; submit the
    chain if asked."""
    from pretrain.slurm import CHAIN_DIR, CPU_STAGES, CpuJob, chain_scripts, submit_chain

    slurm = config.data.slurm  # the CPU jobs' settings: the ones curation's arrays use
    cpu = {
        stage: CpuJob(train.run_dir, stage, job_name=f"{train.job_name}-{stage}",
                      cpus=slurm.cpus_per_task * (config.data.workers if stage == "curate" else 1),
                      mem_per_cpu_gb=slurm.mem_per_cpu_gb, time=slurm.time,
                      partition=slurm.partition or args.partition,
                      sbatch_args=dict(slurm.sbatch_args), env_command=slurm.env_command,
                      config=args.config, overrides=args.overrides, allow_env=args.allow_env)
        for stage in CPU_STAGES
    }  # fmt: skip
    folder = train.run_dir / CHAIN_DIR
    folder.mkdir(parents=True, exist_ok=True)
    scripts = []
    for stage, text in chain_scripts(train, cpu):
        path = folder / f"{stage}.sbatch"
        path.write_text(text)
        scripts.append((stage, path))
    print(f"wrote {', '.join(str(p) for _, p in scripts)}")
    if args.submit:
        jobs = submit_chain(train.run_dir, scripts)
        print("submitted " + ", ".join(f"{stage}={job}" for stage, job in jobs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
