"""`pretrain launch --slurm` as a dry run: the sbatch script parses and holds the right launch."""

import shlex
import subprocess

import pytest

from llm_formats import rundir as layout
from pretrain.slurm import SlurmJob, sbatch_script


def test_sbatch_script_parses_and_launches_torchrun_on_every_node(tmp_path):
    job = SlurmJob(tmp_path / "runs" / "big", nodes=4, gpus_per_node=8,
                   config=str(tmp_path / "my.yaml"), overrides=["train.steps=1000"],
                   max_restarts=2, partition="gpu")  # fmt: skip
    text = sbatch_script(job)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    for line in ("#SBATCH --nodes=4", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --partition=gpu"):  # fmt: skip
        assert line in text.splitlines()
    assert "--nnodes=4 --nproc-per-node=8" in text
    assert '--rdzv-backend=c10d --rdzv-endpoint="$HEAD_NODE:29500"' in text
    assert "--max-restarts=2" in text
    assert (f"--no-python pretrain train train.watchdog=true train.steps=1000 "
            f"--config {tmp_path / 'my.yaml'}") in text  # fmt: skip
    assert "shared by all nodes" in text and str((tmp_path / "runs" / "big").resolve()) in text


def test_shared_filesystem_check_stops_the_job(tmp_path):
    # Run the script's preamble with stand-ins for srun/scontrol: a node that cannot see the token.
    job = SlurmJob(tmp_path / "run", nodes=2, gpus_per_node=1)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/usr/bin/env bash\nexit 1\n")  # the check fails on a node
    (bin_dir / "srun").chmod(0o755)
    proc = subprocess.run(
        ["bash", "-c", sbatch_script(job)], capture_output=True, text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "42"},
    )  # fmt: skip
    assert proc.returncode == 1 and "not on a filesystem shared by all nodes" in proc.stderr


@pytest.mark.parametrize("kw", [dict(nodes=0, gpus_per_node=8), dict(nodes=1, gpus_per_node=0)])
def test_bad_sizes_are_errors(tmp_path, kw):
    with pytest.raises(ValueError, match="must be >= 1"):
        SlurmJob(tmp_path, **kw)


def test_cli_writes_the_script_into_an_existing_run(tmp_path, capsys):
    from pretrain.cli import main

    assert main(["launch-slurm", f"run.root={tmp_path}", "run.name=nope"]) == 1
    assert "nope" in capsys.readouterr().err  # no run to train: curate first
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "stages.json").write_text("{}")
    argv = ["launch-slurm", f"run.root={tmp_path}", "run.name=big", "--nodes", "2",
            "--gpus-per-node", "4", "train.steps=100"]  # fmt: skip
    assert main(argv) == 0
    script = (tmp_path / "big" / "train.sbatch").read_text()
    subprocess.run(["bash", "-n", str(tmp_path / "big" / "train.sbatch")], check=True)
    assert "--nnodes=2 --nproc-per-node=4" in script and "pretrain train" in script
    assert "train.steps=100" in script


CRAFTED_NAMES = ["a\ntouch pwned", "it's", "$(touch pwned)", "`touch pwned`", "a;b", "a b",
                 "-x", ".hidden", "..", ""]  # fmt: skip


@pytest.mark.parametrize("name", CRAFTED_NAMES)
def test_crafted_run_names_are_refused_at_config_time(tmp_path, capsys, name):
    from pretrain.cli import main

    assert main(["launch-slurm", f"run.root={tmp_path}", f"run.name={name}"]) == 2
    err = capsys.readouterr().err
    assert "run.name=" in err and "must be a plain folder name" in err
    assert not list(tmp_path.rglob("*.sbatch")) and not list(tmp_path.rglob("pwned"))


def _stand_ins(bin_dir, argv_file):
    """srun runs its command (options dropped), scontrol names one node, torchrun records argv."""
    bin_dir.mkdir()
    scripts = {
        "srun": 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
        "scontrol": "echo node1\n",
        "torchrun": f"printf '%s\\0' \"$@\" > {shlex.quote(str(argv_file))}\n",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)


def test_odd_paths_and_values_run_only_the_stand_ins(tmp_path):
    """Quotes, spaces and `$(...)` in the run directory, config path and overrides stay data:
    the script runs, torchrun gets them verbatim, and no injected command ran."""
    odd = tmp_path / "a b'$(touch pwned1)'c $(touch pwned2) `touch pwned6`"
    config = odd / "my config's.yaml"
    overrides = ["train.steps=5", "run.name=a-b.c_d", "eval.note=$(touch pwned3)'"]
    job = SlurmJob(odd / "a-b.c_d", nodes=2, gpus_per_node=1, config=str(config),
                   overrides=overrides, partition="gpu; touch pwned4", account="$(touch pwned5)",
                   job_name="pretrain-a-b.c_d")  # fmt: skip
    text = sbatch_script(job)
    argv_file = tmp_path / "torchrun.argv"
    _stand_ins(tmp_path / "bin", argv_file)
    proc = subprocess.run(
        ["bash", "-c", text], capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "SLURM_JOB_ID": "42",
             "SLURM_JOB_NODELIST": "node1"},
    )  # fmt: skip
    assert not [p.name for p in tmp_path.rglob("pwned*")]
    assert proc.returncode == 0, proc.stderr
    argv = argv_file.read_text().split("\0")[:-1]
    assert argv[argv.index("--no-python") :] == [
        "--no-python", "pretrain", "train", "train.watchdog=true", *overrides,
        "--config", str(config.resolve()),
    ]  # fmt: skip
    output = next(line for line in text.splitlines() if line.startswith("#SBATCH --output="))
    assert shlex.split(output.removeprefix("#SBATCH --output=")) == [
        f"{odd / 'a-b.c_d'}/{layout.SLURM_LOG}"
    ]


@pytest.mark.parametrize("field_name", ["run_dir", "time", "partition", "account", "job_name"])
def test_newlines_in_sbatch_header_values_are_refused(tmp_path, field_name):
    values = {"run_dir": tmp_path / "a\ntouch pwned", "time": "1:00\ntouch pwned",
              "partition": "gpu\ntouch pwned", "account": "x\rtouch pwned",
              "job_name": "p\ntouch pwned"}  # fmt: skip
    kwargs = {"run_dir": tmp_path, field_name: values[field_name]}
    with pytest.raises(ValueError, match=f"{field_name}=.*control character"):
        SlurmJob(nodes=1, gpus_per_node=1, **kwargs)


def test_slurm_warns_every_rank_and_torchrun_forwards_the_warning(tmp_path):
    """`--signal=USR1@120` (no `B:`: the step's processes, not the batch shell, get it), and
    torchrun accepts the options that forward SIGUSR1 and wait for the ranks' checkpoint."""
    from torch.distributed.run import get_args_parser

    text = sbatch_script(SlurmJob(tmp_path / "run", nodes=2, gpus_per_node=4))
    assert "#SBATCH --signal=USR1@120" in text.splitlines()
    options = text.split("torchrun \\\n", 1)[1].split("--no-python", 1)[0].split()
    args = get_args_parser().parse_args([o for o in options if o != "\\"] + ["pretrain"])
    assert "SIGUSR1" in args.signals_to_handle.split(",") and "SIGTERM" in args.signals_to_handle
    assert 0 < args.shutdown_timeout < 120
