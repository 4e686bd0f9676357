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
from test_pipeline import SAMPLE, tiny_config  # noqa: E402

# sbatch: records each job (script, dependency) and runs it at once, as Slurm would once its
# dependency is met: a job whose dependency was never submitted is refused (exit 1); one whose
# dependency failed is accepted and never runs (Slurm's DependencyNeverSatisfied). A job array
# (`--array=0-N`, as datatrove submits curation's and the shards' tasks) runs its script once
# per index with SLURM_ARRAY_TASK_ID set, one after another; `--export=ALL,K=V` sets K.
FAKE_SBATCH = f"""#!{sys.executable}
import json, os, re, shlex, subprocess, sys
from pathlib import Path

state = Path(os.environ["FAKE_SLURM_DIR"])
args = sys.argv[1:]
script = Path(args[-1])
text = script.read_text()
options = [a for a in args[:-1] if a.startswith("--")]
options += re.findall(r"^#SBATCH (--\\S+)", text, flags=re.M)
value = lambda name: next((o.split("=", 1)[1] for o in options if o.startswith(name)), None)
waits = [d.split(":")[1:] for d in (value("--dependency=") or "").split(",") if d]
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
array = re.fullmatch(r"0-(\\d+)(%\\d+)?", value("--array=") or "0-0")
indexes = list(range(int(array.group(1)) + 1))
record = {{"id": job, "script": str(script), "after": waits, "options": options,
          "array": value("--array=") and len(indexes), "text": text}}
if outcome is None:
    env = {{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}}
    env |= dict(kv.split("=", 1) for kv in (value("--export=") or "").split(",") if "=" in kv)
    env |= {{"SLURM_JOB_ID": job, "SLURM_JOB_NODELIST": "node1", "SLURM_NODELIST": "node1"}}
    codes = []
    for index in indexes:
        if record["array"]:
            env |= {{"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": str(index)}}
        output = shlex.split(value("--output="))[0]
        output = output.replace("%j", job).replace("%A", job).replace("%a", str(index))
        with open(output, "a") as log:
            done = subprocess.run(["bash", str(script)], stdout=log, stderr=subprocess.STDOUT,
                                  env=env)
        codes.append(done.returncode)
    outcome = str(max(codes))
(state / f"{{job}}.json").write_text(json.dumps({{**record, "outcome": outcome}}))
(state / f"{{job}}.rc").write_text(outcome)
print(job)
"""
# srun runs its command once (one node), torchrun its command once (one process per node);
# FAIL_STAGE makes that stage's torchrun fail, as a crashed job would. squeue lists no job:
# every job has ended by the time sbatch returns.
STAND_INS = {
    "srun": textwrap.dedent("""\
        while [[ "$1" == -* ]]; do
            case "$1" in -n|-N|--ntasks|--nodes) shift 2 ;; *) shift ;; esac
        done
        exec "$@"
        """),
    "scontrol": "echo node1\n",
    "squeue": "exit 0\n",
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


def _head_warc(dst: Path, pages: int) -> Path:
    """The first `pages` records (all responses) of the English handbook WARC, as they are."""
    from warcio.archiveiterator import ArchiveIterator

    src = SAMPLE / "web" / "handbook-en-US.warc.gz"
    with open(src, "rb") as f:
        records = ArchiveIterator(f)
        for _, record in zip(range(pages), records, strict=False):
            records.read_to_end(record)
        end = records.get_record_offset() + records.get_record_length()
    dst.write_bytes(src.read_bytes()[:end])  # each record is a gzip member of its own
    return dst


def _tinier_config(tmp_path: Path) -> Path:
    """test_pipeline's tiny run on 16 web pages, for 4 steps, 2 items per eval task, exact
    dedup only: each stage still runs, in a dozen fresh `pretrain` processes and, on the
    stand-in Slurm, two processes per curation stage (its array task, datatrove's merge_stats);
    URL and MinHash dedup would add 5 stages of the same kind (test_executors.py submits them)."""
    path = tiny_config(tmp_path, web=_head_warc(tmp_path / "web.warc.gz", 16))
    config = yaml.safe_load(path.read_text())
    config["data"]["dedup"] = {"url": False, "minhash": False}
    config["train"] |= {"steps": 4, "log_every": 2, "checkpoint_every": 4, "warmup_steps": 1}
    config["eval"]["limit"] = 2
    path.write_text(yaml.safe_dump(config))
    return path


def _samples(shards: Path, source: str) -> list[tuple[int, ...]]:
    from streaming import StreamingDataset

    dataset = StreamingDataset(local=str(shards / source), shuffle=False, batch_size=1)
    return [tuple(dataset[i]["tokens"].tolist()) for i in range(len(dataset))]


# Not marked `trains`: its jobs export OMP_NUM_THREADS from the job's CPUs (as sbatch scripts
# must), so under the CI rerun's OMP_NUM_THREADS=1 the chain and the in-process local run train
# with different thread counts and round differently; in the main pass both use 2 threads.
@pytest.mark.slow  # about 13 fresh `pretrain` processes (each imports torch), ~20 array tasks
def test_chain_on_stand_in_slurm_matches_a_local_run_and_resumes_after_a_failed_job(
    tmp_path, fake_slurm, monkeypatch, capsys
):
    """data.executor=slurm: the curate and shards jobs submit datatrove job arrays (the shards
    as shards.tasks=2 array tasks and a finalize job) and wait for them; train runs after."""
    config = _tinier_config(tmp_path)
    assert main(["--config", str(config)]) == 0  # the local run: runs/tiny, shards.tasks=1
    local = tmp_path / "runs" / "tiny"
    argv = ["launch-slurm", "--all", "--submit", "--config", str(config), "run.name=chain",
            "data.executor=slurm", "data.slurm.partition=cpu", "shards.tasks=2",
            "--nodes", "1", "--gpus-per-node", "1"]  # fmt: skip

    monkeypatch.setenv("FAIL_STAGE", "eval")  # the eval job fails; report never runs
    assert main(argv) == 0
    chain = tmp_path / "runs" / "chain"
    jobs = _jobs(fake_slurm)
    first = [j for j in jobs if Path(j["script"]).parent == chain / "slurm"]
    assert [Path(j["script"]).stem for j in first] == list(STAGES)
    assert [j["after"] for j in first] == [[], *[[j["id"]] for j in first[:-1]]]
    assert [j["outcome"] for j in first] == ["0"] * 4 + ["1", "never ran"]
    before = json.loads((chain / "stages.json").read_text())
    assert list(before) == ["curate", "tokenizer", "shards", "train"]
    assert "torchrun: eval failed" in _job_log(chain, "eval", first)

    # Inside the shards job (submitted before it ended, so before train's job): an array of
    # 2 tasks running the pickled shard tasks, then the finalize job after it.
    shards_job, train_job = (int(j["id"]) for j in first[2:4])
    inner = [j for j in jobs if shards_job < int(j["id"]) < train_job]
    arrays = [j for j in inner if "launch_pickled_pipeline" in j["text"]]
    assert [(j["array"], j["outcome"]) for j in arrays] == [(2, "0"), (1, "0")]
    assert ".shards.partial/_work/logs/shards/executor.pik" in arrays[0]["text"]
    assert arrays[1]["after"] == [arrays[0]["id"]]
    assert "shards submitted as Slurm jobs" in _job_log(chain, "shards", first)
    curation = [j for j in jobs if int(first[0]["id"]) < int(j["id"]) < int(first[1]["id"])]
    assert any("launch_pickled_pipeline" in j["text"] for j in curation)

    monkeypatch.delenv("FAIL_STAGE")  # submit the chain again: it resumes
    assert main(argv) == 0
    second = _jobs(fake_slurm)[len(jobs) :]
    assert [j["outcome"] for j in second] == ["0"] * 6  # no array: curate and shards skipped
    after = json.loads((chain / "stages.json").read_text())
    for stage in ("curate", "tokenizer", "shards", "train"):
        assert after[stage] == before[stage], stage  # skipped: the record is untouched
        assert "up to date, skipped" in _job_log(chain, stage, second)
    assert "stage eval: running" in _job_log(chain, "eval", second)

    # The run directory of the local run: the same stage hashes (executor and shards.tasks are
    # not hashed), documents, samples in the same order, model and scores.
    ours, theirs = after, json.loads((local / "stages.json").read_text())
    assert list(ours) == list(theirs) == list(STAGES)
    for stage in STAGES:
        assert ours[stage].get("hash") == theirs[stage].get("hash"), stage
    assert ours["curate"]["documents"] == theirs["curate"]["documents"]
    for key in ("sources", "heldout_documents"):
        assert ours["shards"][key] == theirs["shards"][key], key
    for name in ("shard_stats.json", "heldout.jsonl"):
        assert (chain / "shards" / name).read_bytes() == (local / "shards" / name).read_bytes()
    for source in ours["shards"]["sources"]:
        assert _samples(chain / "shards", source) == _samples(local / "shards", source), source
    ranks = {p.parent.name for p in (chain / "shards").glob("*/0000[0-9]/index.json")}
    assert ranks == {"00000", "00001"}  # each of the 2 tasks wrote its share
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


@pytest.mark.parametrize("stage", ["curate", "shards"])
def test_a_stage_on_the_slurm_executor_outside_a_job_is_an_error(tmp_path, monkeypatch, stage):
    """Its arrays are waited for by the stage's job of the chain: outside one nothing is
    submitted."""
    from pretrain import stages
    from pretrain.config import load_pretrain_config

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    config = load_pretrain_config(
        str(tiny_config(tmp_path)), ["data.executor=slurm", "data.slurm.partition=cpu"]
    )
    for name in ("llm_data.run_curation", "llm_data.tokenize_to_shards"):
        monkeypatch.setattr(name, lambda *a, **k: pytest.fail("submitted outside a job"))
    with pytest.raises(ValueError, match=f"by the {stage} job of `pretrain launch-slurm --all`"):
        getattr(stages, stage)(config, tmp_path / "run")


@pytest.mark.parametrize(
    ("stage", "work", "marker"),
    [("curate", ".curated.partial", "curation_stats.json"),
     ("shards", ".shards.partial", "shard_stats.json")],
)  # fmt: skip
def test_a_stage_job_waits_for_its_arrays_then_finds_their_output(
    tmp_path, monkeypatch, stage, work, marker
):
    """data.executor=slurm inside the chain: `squeue` lists the arrays until they end; an
    output the last job never wrote is an error naming the jobs and where their logs are."""
    from pretrain.stages import _wait_for_slurm_stage

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
    monkeypatch.setattr("pretrain.slurm.time.sleep", lambda s: None)
    submitted = {"executor": "slurm", "jobs": {"a": "1002", "_finalize": "1003"},
                 "work_dir": str(tmp_path / work)}  # fmt: skip
    out = tmp_path / "out"
    (tmp_path / work).mkdir()  # the last job never ran: the work folder is left
    with pytest.raises(RuntimeError, match=rf"{stage}'s Slurm jobs .*1002.*1003.*{work}"):
        _wait_for_slurm_stage(stage, submitted, out / marker)
    assert len(polls.read_text().split()) == 2
    out.mkdir()
    (out / marker).write_text("{}")  # an earlier run's output does not make this one done
    with pytest.raises(RuntimeError, match="before their last one renamed the work folder"):
        _wait_for_slurm_stage(stage, submitted, out / marker)
    (tmp_path / work).rename(tmp_path / "renamed")  # what the finalize job does
    _wait_for_slurm_stage(stage, submitted, out / marker)
    assert len(polls.read_text().split()) == 4  # polled once more each time: gone
