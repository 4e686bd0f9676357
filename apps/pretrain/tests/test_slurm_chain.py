"""`pretrain launch-slurm --all --submit` on a stand-in Slurm: the chain of every stage's job,
run in dependency order, gives the run directory of a local run; a rerun after a failed job
skips the finished stages."""

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from llm_formats.checkpoint import read_manifest, step_dirs
from pretrain.cli import main
from pretrain.pipeline import STAGES
from pretrain.slurm import CpuJob, SlurmJob, chain_scripts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pipeline import tiny_config  # noqa: E402

# sbatch: records each job (script, dependency) and runs it at once, as Slurm would once its
# dependency is met: a job whose dependency was never submitted is refused (exit 1); one whose
# dependency failed is accepted and never runs (Slurm's DependencyNeverSatisfied).
FAKE_SBATCH = f"""#!{sys.executable}
import json, os, re, shlex, subprocess, sys
from pathlib import Path

state = Path(os.environ["FAKE_SLURM_DIR"])
args = sys.argv[1:]
script = Path(args[-1])
text = script.read_text()
options = [a for a in args[:-1] if a.startswith("--")]
options += re.findall(r"^#SBATCH (--\\S+)", text, flags=re.M)
waits = [o.split(":")[1:] for o in options if o.startswith("--dependency=afterok:")]
waits = [j for group in waits for j in group]
counter = state / "counter"
job = str(int(counter.read_text()) + 1 if counter.exists() else 1001)
counter.write_text(job)
outcome = None
for dep in waits:
    rc = state / f"{{dep}}.rc"
    if not rc.exists():
        print(f"sbatch: error: dependency {{dep}} is not a finished job", file=sys.stderr)
        sys.exit(1)
    if rc.read_text() != "0":
        outcome = "never ran"
record = {{"id": job, "script": str(script), "after": waits, "options": options}}
if outcome is None:
    output = next(o for o in options if o.startswith("--output=")).split("=", 1)[1]
    output = shlex.split(output)[0].replace("%j", job)
    env = {{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}}
    env |= {{"SLURM_JOB_ID": job, "SLURM_JOB_NODELIST": "node1"}}
    with open(output, "w") as log:
        done = subprocess.run(["bash", str(script)], stdout=log, stderr=subprocess.STDOUT, env=env)
    outcome = str(done.returncode)
(state / f"{{job}}.json").write_text(json.dumps({{**record, "outcome": outcome}}))
(state / f"{{job}}.rc").write_text(outcome)
print(job)
"""
# srun runs its command once (one node), torchrun its command once (one process per node);
# FAIL_STAGE makes that stage's torchrun fail, as a crashed job would.
STAND_INS = {
    "srun": 'while [[ "$1" == -* ]]; do shift; done\nexec "$@"\n',
    "scontrol": "echo node1\n",
    "torchrun": textwrap.dedent("""\
        while [[ "$1" != --no-python ]]; do shift; done
        shift
        if [[ "$2" == "${FAIL_STAGE:-}" ]]; then echo "torchrun: $2 failed" >&2; exit 1; fi
        exec "$@"
        """),
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm-state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    venv_bin = Path(sys.executable).parent  # `pretrain` and `python` of this environment
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    for name in [n for n in os.environ if n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    return state


def _jobs(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(state.glob("*.json"))]


def _scores(tree):
    """eval.json without its timings."""
    if isinstance(tree, dict):
        return {k: _scores(v) for k, v in tree.items() if "seconds" not in k}
    if isinstance(tree, list):
        return [_scores(v) for v in tree]
    return tree


def _checkpoint_step(run: Path) -> int:
    return read_manifest(step_dirs(run / "checkpoints")[0])["step"]


def _tinier_config(tmp_path: Path) -> Path:
    """test_pipeline's tiny run for 4 steps, 2 items per eval task: each stage still runs, in
    a dozen fresh processes."""
    path = tiny_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["train"] |= {"steps": 4, "log_every": 2, "checkpoint_every": 4, "warmup_steps": 1}
    config["eval"]["limit"] = 2
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.trains
@pytest.mark.slow  # about 13 fresh `pretrain` processes (each imports torch)
def test_chain_on_stand_in_slurm_matches_a_local_run_and_resumes_after_a_failed_job(
    tmp_path, fake_slurm, monkeypatch, capsys
):
    config = _tinier_config(tmp_path)
    assert main(["--config", str(config)]) == 0  # the local run: runs/tiny
    local = tmp_path / "runs" / "tiny"
    argv = ["launch-slurm", "--all", "--submit", "--config", str(config), "run.name=chain",
            "--nodes", "1", "--gpus-per-node", "1"]  # fmt: skip

    monkeypatch.setenv("FAIL_STAGE", "eval")  # the eval job fails; report never runs
    assert main(argv) == 0
    first = _jobs(fake_slurm)
    assert [Path(j["script"]).stem for j in first] == list(STAGES)
    assert [j["after"] for j in first] == [[], *[[str(1001 + i)] for i in range(5)]]
    assert [j["outcome"] for j in first] == ["0"] * 4 + ["1", "never ran"]
    chain = tmp_path / "runs" / "chain"
    before = json.loads((chain / "stages.json").read_text())
    assert list(before) == ["curate", "tokenizer", "shards", "train"]
    assert "torchrun: eval failed" in (chain / "slurm" / "eval-1005.out").read_text()

    monkeypatch.delenv("FAIL_STAGE")  # submit the chain again: it resumes
    assert main(argv) == 0
    second = _jobs(fake_slurm)[len(first) :]
    assert [j["outcome"] for j in second] == ["0"] * 6
    after = json.loads((chain / "stages.json").read_text())
    for stage in ("curate", "tokenizer", "shards", "train"):
        assert after[stage] == before[stage], stage  # skipped: the record is untouched
        assert "up to date, skipped" in _job_log(chain, stage, second)
    assert "stage eval: running" in _job_log(chain, "eval", second)

    # The same run directory as the local run.
    ours, theirs = after, json.loads((local / "stages.json").read_text())
    assert list(ours) == list(theirs) == list(STAGES)
    for stage in STAGES:
        assert ours[stage].get("hash") == theirs[stage].get("hash"), stage
    shards = sorted(p.relative_to(local / "shards") for p in (local / "shards").rglob("*.mds*"))
    assert shards
    for rel in shards:
        assert (chain / "shards" / rel).read_bytes() == (local / "shards" / rel).read_bytes()
    assert _checkpoint_step(chain) == _checkpoint_step(local) == 4
    assert _scores(json.loads((chain / "eval.json").read_text())) == _scores(
        json.loads((local / "eval.json").read_text())
    )
    assert (chain / "report.md").is_file()


def _job_log(run: Path, stage: str, jobs: list[dict]) -> str:
    job = next(j["id"] for j in jobs if Path(j["script"]).stem == stage)
    return (run / "slurm" / f"{stage}-{job}.out").read_text()


def test_chain_scripts_parse_and_quote_odd_values(tmp_path):
    odd = tmp_path / "a b'$(touch pwned1)'"
    train = SlurmJob(odd / "run", nodes=2, gpus_per_node=4, config=str(odd / "c.yaml"),
                     overrides=["eval.note=$(touch pwned2)"], partition="gpu",
                     job_name="pretrain-run")  # fmt: skip
    cpu = {s: CpuJob(odd / "run", s, job_name=f"pretrain-run-{s}", partition="cpu; touch pwned3",
                     sbatch_args={"account": "$(touch pwned4)"}, overrides=train.overrides,
                     config=train.config)
           for s in ("curate", "tokenizer", "shards", "report")}  # fmt: skip
    scripts = dict(chain_scripts(train, cpu))
    assert list(scripts) == list(STAGES)
    for stage, text in scripts.items():
        path = tmp_path / f"{stage}.sbatch"
        path.write_text(text)
        subprocess.run(["bash", "-n", str(path)], check=True)
        headers = dict(
            line.removeprefix("#SBATCH --").split("=", 1)
            for line in text.splitlines()
            if line.startswith("#SBATCH --")
        )
        assert shlex.split(headers["output"]) == [f"{odd / 'run'}/slurm/{stage}-%j.out"]
        assert shlex.split(headers["job-name"]) == [f"pretrain-run-{stage}"]
        assert "--skip-done" in text and f"pretrain {stage}" in text
    assert "--nnodes=2 --nproc-per-node=4" in scripts["eval"]
    assert "train.watchdog=true" in scripts["train"] and "watchdog" not in scripts["eval"]
    assert shlex.split(scripts["curate"].split("exec ", 1)[1]) == [
        "pretrain", "curate", "eval.note=$(touch pwned2)", "--config",
        str((odd / "c.yaml").resolve()), "--skip-done",
    ]  # fmt: skip
    assert "#SBATCH --partition='cpu; touch pwned3'" in scripts["shards"]
    assert not list(tmp_path.rglob("pwned*"))


def test_cli_writes_the_chain_without_an_existing_run(tmp_path, capsys):
    argv = ["launch-slurm", "--all", f"run.root={tmp_path}", "run.name=fresh", "--nodes", "2"]
    assert main(argv) == 0
    folder = tmp_path / "fresh" / "slurm"
    assert sorted(p.stem for p in folder.glob("*.sbatch")) == sorted(STAGES)
    assert not (tmp_path / "fresh" / "stages.json").exists()  # nothing ran


def test_curate_with_the_slurm_executor_outside_a_job_is_an_error(tmp_path, monkeypatch):
    from pretrain import stages
    from pretrain.config import load_pretrain_config

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    config = load_pretrain_config(
        str(tiny_config(tmp_path)), ["data.executor=slurm", "data.slurm.partition=cpu"]
    )
    monkeypatch.setattr("llm_data.run_curation", lambda c: {"executor": "slurm", "jobs": {}})
    with pytest.raises(ValueError, match="launch-slurm --all"):
        stages.curate(config, tmp_path / "run")


def test_the_curate_job_waits_for_curations_arrays_then_reads_their_stats(tmp_path, monkeypatch):
    """data.executor=slurm inside the chain: `squeue` lists the arrays until they end; then the
    curated folder's stats are the stage's, and a folder the last job never wrote is an error
    naming the jobs and where their logs are."""
    from pretrain.stages import _wait_for_curation

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    polls = tmp_path / "polls"
    # queued on the first poll, gone on the second
    (bin_dir / "squeue").write_text(
        f"#!/usr/bin/env bash\necho x >> {shlex.quote(str(polls))}\n"
        f"[[ $(wc -l < {shlex.quote(str(polls))}) -lt 2 ]] && echo 1002_[0-3]\nexit 0\n"
    )
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "1001")
    monkeypatch.setattr("pretrain.slurm.time.sleep", lambda s: None)
    submitted = {"executor": "slurm", "jobs": {"a": "1002", "_finalize": "1003"},
                 "work_dir": str(tmp_path / ".curated.partial")}  # fmt: skip
    out = tmp_path / "curated"
    with pytest.raises(RuntimeError, match=r"1002.*1003.*\.curated\.partial/logs"):
        _wait_for_curation(submitted, out)
    assert len(polls.read_text().split()) == 2
    out.mkdir()
    (out / "curation_stats.json").write_text(json.dumps({"a": {"documents_out": 3}}))
    assert _wait_for_curation(submitted, out) == {"a": {"documents_out": 3}}
