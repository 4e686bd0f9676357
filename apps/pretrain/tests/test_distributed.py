"""The train stage under torchrun: 2 gloo processes on CPU against one, same global batch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_train import read_metrics
from pretrain.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pipeline import tiny_config  # noqa: E402

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A run with curated data, tokenizer and shards, and no training yet."""
    tmp = tmp_path_factory.mktemp("dist")
    config = tiny_config(tmp)
    assert main(["--config", str(config), "curate", "tokenizer", "shards"]) == 0
    return config, tmp / "runs"


def _copy(runs: Path, name: str) -> None:
    shutil.copytree(runs / "tiny", runs / name)


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl")}


def _launch(config: Path, *args: str, script: Path | None = None, restarts: int = 0,
            stage: str = "train", nproc: int = 2):  # fmt: skip
    """`torchrun` of `nproc` processes running `pretrain train` (or `stage`; or `script`, a
    wrapper of it)."""
    program = [str(script)] if script else ["--no-python", str(BIN / "pretrain")]
    return subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", str(nproc),
         "--max-restarts", str(restarts), *program, "--config", str(config), stage, *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _run_wrapped(trained, tmp_path: Path, name: str, wrapper: str, *args: str, restarts=0):
    """Train run `name` (a copy of the prepared run) for 10 steps under torchrun through the
    `wrapper` script (it patches the trainer to inject a failure); returns (run dir, stderr)."""
    config, runs = trained
    shutil.copytree(runs / "tiny", runs / name)
    script = tmp_path / f"{name}.py"
    script.write_text(wrapper)
    proc = _launch(config, "train.steps=10", "train.checkpoint_every=5", f"run.name={name}",
                   *args, script=script, restarts=restarts)  # fmt: skip
    (tmp_path / "torchrun.log").write_text(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return runs / name, proc.stderr


def _torchrun(config: Path, *args: str, nproc: int = 2) -> None:
    proc = _launch(config, *args, nproc=nproc)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def trained(prepared):
    """The same 10 steps twice: on 2 ranks with batch 8 each, and in one process with batch 16."""
    config, runs = prepared
    _copy(runs, "two")
    _copy(runs, "one")
    _torchrun(config, "train.steps=10", "run.name=two")
    argv = ["--config", str(config), "train", "train.steps=10", "loader.batch_size=16"]
    assert main([*argv, "run.name=one"]) == 0
    return config, runs


def test_two_ranks_train_like_one_process_with_the_same_global_batch(trained):
    _, runs = trained
    two, one = runs / "two", runs / "one"
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    train = json.loads((two / "stages.json").read_text())["train"]
    assert train["world_size"] == 2 and train["global_batch"] == 16
    shards = sorted(p.name for p in (two / "checkpoints" / "step_000010").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    steps = [r["step"] for r in read_metrics(two / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 10  # each logged step once, rank 0 only
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)


def test_resume_on_another_world_size_continues_the_same_run(trained):
    # 2 ranks -> 1 process and 1 process -> 2 ranks, against 1 -> 1: the same next losses.
    config, runs = trained
    for src, dst in (("one", "ref"), ("two", "two_to_one"), ("one", "one_to_two")):
        shutil.copytree(runs / src, runs / dst)
    argv = ["--config", str(config), "train", "train.steps=15", "loader.batch_size=16"]
    assert main([*argv, "run.name=ref"]) == 0
    assert main([*argv, "run.name=two_to_one"]) == 0
    _torchrun(config, "train.steps=15", "run.name=one_to_two")
    ref = _losses(runs / "ref")
    assert ref.keys() >= {10, 15}
    for name in ("two_to_one", "one_to_two"):
        got = _losses(runs / name)
        assert got[15] == pytest.approx(ref[15], rel=1e-4), name
        assert sorted(got) == sorted(ref)  # every logged step once, none replayed


@pytest.mark.trains
def test_two_ranks_warm_start_from_hf_like_one_process(trained, tmp_path):
    """``train.init_from`` a Hugging Face export under FSDP2: each rank reads its own shards'
    slices of the safetensors (DCP's Hugging Face reader), and the first losses equal those of
    one process started from the same directory with the same global batch."""
    config, runs = trained
    hf = tmp_path / "hf"
    root = Path(__file__).resolve().parents[3]
    convert = [sys.executable, "-m", "tools.convert", "dcp-to-hf",
               str(runs / "one" / "checkpoints" / "step_000010"), str(hf)]  # fmt: skip
    subprocess.run(convert, cwd=root, check=True, capture_output=True)
    for name in ("warm_two", "warm_one"):
        shutil.copytree(runs / "tiny", runs / name)
    warm = [f"train.init_from={hf}", "train.steps=2", "train.log_every=1", "train.warmup_steps=0"]
    _torchrun(config, *warm, "run.name=warm_two")
    argv = ["--config", str(config), "train", *warm, "loader.batch_size=16"]
    assert main([*argv, "run.name=warm_one"]) == 0
    two, one = _losses(runs / "warm_two"), _losses(runs / "warm_one")
    assert sorted(two) == [1, 2] and two == pytest.approx(one, rel=1e-4)
    assert two[1] < _losses(runs / "one")[1] - 0.1  # not the untrained model's loss


def test_other_stages_refuse_under_torchrun(prepared, monkeypatch, capsys):
    config, _ = prepared
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["--config", str(config), "eval", "report"]) == 1
    err = capsys.readouterr().err
    assert "only the train and eval stages run" in err and "asked for eval, report" in err
    assert "pretrain curate tokenizer shards" in err


def _scores(run: Path) -> tuple[dict, dict, dict]:
    """(eval.json without how it ran, eval/results.json without its wall times, every per-item
    file's text)."""
    summary = json.loads((run / "eval" / "results.json").read_text())
    assert summary.pop("seconds").keys() == summary["tasks"].keys()
    per_item = {p.name: p.read_text() for p in sorted((run / "eval").glob("*.jsonl"))}
    scores = json.loads((run / "eval.json").read_text())
    del scores["world_size"], scores["sharded"]
    return scores, summary, per_item


def test_eval_on_two_ranks_writes_the_scores_of_one_process(trained):
    # `pretrain eval` against torchrun's 2 ranks, replicated and sharded (FSDP2), on copies of
    # the trained run: the same per-item records (every log-likelihood, to the last bit) and
    # metrics, written once (rank 0). Each rank scores whole batches that one process forms
    # too, and sums run over the gathered results in one-process order: nothing depends on
    # the rank count. One thread everywhere: torchrun gives each rank one, and a matrix
    # product may round differently on another thread count. The run was trained in one
    # process with batch 16: eval compares no global batch, so any rank count may score it.
    config, runs = trained
    args = ["eval.limit=6", "run.threads=1"]
    for name in ("eval_one", "eval_two", "eval_sharded"):
        shutil.copytree(runs / "one", runs / name)
    one = subprocess.run([str(BIN / "pretrain"), "--config", str(config), "eval",
                          "run.name=eval_one", *args], capture_output=True, text=True)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    for name, shard in (("eval_two", "never"), ("eval_sharded", "always")):
        proc = _launch(config, f"run.name={name}", f"eval.shard={shard}", *args, stage="eval")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _scores(runs / name) == _scores(runs / "eval_one"), name
        ran = json.loads((runs / name / "eval.json").read_text())
        assert (ran["world_size"], ran["sharded"]) == (2, shard == "always")
        stages = json.loads((runs / name / "stages.json").read_text())["eval"]
        assert stages["tasks"] == _scores(runs / name)[0]["tasks"]  # recorded by rank 0
    ev = json.loads((runs / "eval_one" / "eval.json").read_text())
    assert ev["precision"] == "float32" and ev["step"] == 10  # CPU: fp32, as before
    assert (ev["world_size"], ev["sharded"]) == (1, False)


def _rank1_fails_after(step: int, failure: str) -> str:
    """A wrapper of `pretrain` whose rank 1 runs `failure` (a Python statement) right after
    step `step`, in torchrun's first attempt only (the restarted job runs clean)."""
    return f"""
import os, signal, sys, threading
from llm_train.trainer import Trainer
from pretrain.cli import main

advance = Trainer._advance

def hung_in_a_collective():
    threading.Event().wait()

def advance_then_fail(self, micro, metrics):
    advance(self, micro, metrics)
    first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first and self.rank == 1 and self.step == {step}:
        {failure}

Trainer._advance = advance_then_fail
sys.exit(main(sys.argv[1:]))
"""


_KILL_ONE_RANK = _rank1_fails_after(7, "os.kill(os.getpid(), signal.SIGKILL)")


def test_a_killed_rank_restarts_the_job_which_finishes_like_an_uninterrupted_one(trained, tmp_path):
    # With asynchronous checkpoints: the step-5 save is written in the background on 2 ranks.
    killed, stderr = _run_wrapped(trained, tmp_path, "killed", _KILL_ONE_RANK,
                                  "train.async_checkpoint=true", restarts=1)  # fmt: skip
    assert "exitcode: -9" in stderr  # rank 1 did die once (SIGKILL)
    assert _losses(killed) == pytest.approx(_losses(trained[1] / "two"), rel=1e-5)
    steps = [r["step"] for r in read_metrics(killed / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 10


_HANG_ONE_RANK = _rank1_fails_after(6, "hung_in_a_collective()")


def test_a_hung_rank_dumps_stacks_and_the_job_restarts(trained, tmp_path):
    # Rank 1 hangs after step 6; rank 0 waits for it in step 7's first collective until its
    # step timer fires (stacks dumped, exit 1); torchrun then stops rank 1 with SIGTERM, which
    # dumps rank 1's stacks, and restarts the job, which resumes from step 5.
    hung, _ = _run_wrapped(trained, tmp_path, "hung", _HANG_ONE_RANK, "train.step_timeout_s=5",
                           restarts=1)  # fmt: skip
    rank0, rank1 = ((hung / f"hang-rank{r}.txt").read_text() for r in (0, 1))
    assert "Timeout" in rank0  # its step never ended: the timer fired
    assert "hung_in_a_collective" in rank1  # stopped by torchrun: where it was
    assert _losses(hung) == pytest.approx(_losses(trained[1] / "two"), rel=1e-5)


_SPIKE_ONCE = """
import sys
from llm_train.trainer import Trainer
from pretrain.cli import main

next_micro, injected = Trainer._next_micro, []

def next_micro_with_a_spike(self, batches):  # step 8's targets all become one unlikely token
    micro = next_micro(self, batches)
    if self.step + 1 == 8 and not injected:
        injected.append(True)
        for batch in micro:
            batch["labels"] = batch["labels"].clone().fill_(511)
    return micro

Trainer._next_micro = next_micro_with_a_spike
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.trains
def test_a_spike_rolls_back_on_every_rank_and_the_run_finishes(prepared, tmp_path):
    # Decided by the trained losses: the planted spike is 1.3 above the guard's threshold, and
    # the closest natural step 0.06 below it (one process, same global batch; 1e-5 across CPU
    # kernels). It trains a copy of the prepared run, so it needs no `trained` runs.
    spiked, _ = _run_wrapped(prepared, tmp_path, "spiked", _SPIKE_ONCE,
                             "train.spike_policy=rollback", "train.spike_k=3",
                             "train.spike_window=3")  # fmt: skip
    events = [json.loads(line) for line in (spiked / "spikes.jsonl").read_text().splitlines()]
    assert [(e["step"], e["action"]) for e in events] == [(8, "rolled_back")]
    assert [w["step"] for w in events[0]["window"]] == [6, 7, 8]  # the steps since step 5
    records = read_metrics(spiked / "metrics.jsonl")
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)) and steps[-1] == 10
    assert records[-1]["rollbacks_total"] == 1


def test_hybrid_sharding_trains_like_one_process(trained):
    # run.replicas=2 on 2 processes: a 2 x 1 (replicate x shard) mesh, the degenerate HSDP.
    config, runs = trained
    shutil.copytree(runs / "tiny", runs / "hsdp")
    _torchrun(config, "train.steps=10", "run.replicas=2", "run.name=hsdp")
    assert _losses(runs / "hsdp") == pytest.approx(_losses(runs / "one"), rel=1e-4)


@pytest.mark.trains
def test_hybrid_sharding_on_a_2x2_mesh_trains_like_one_process_and_shards_the_checkpoint(
    trained,
):
    # run.replicas=2 on 4 processes: 2 replicas x 2 shards, 4 rows each = one process's 16.
    config, runs = trained
    shutil.copytree(runs / "tiny", runs / "hsdp4")
    _torchrun(config, "train.steps=10", "run.replicas=2", "loader.batch_size=4",
              "run.name=hsdp4", nproc=4)  # fmt: skip
    assert _losses(runs / "hsdp4") == pytest.approx(_losses(runs / "one"), rel=1e-4)
    # Each sharded tensor is stored as two chunks, its two halves, in two files.
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = FileSystemReader(runs / "hsdp4" / "checkpoints" / "step_000010").read_metadata()
    tensors = {
        key: meta for key, meta in metadata.state_dict_metadata.items()
        if key.startswith("model.") and isinstance(meta, TensorStorageMetadata)
    }  # fmt: skip
    assert tensors
    for key, meta in tensors.items():
        rows, half = meta.size[0], -(-meta.size[0] // 2)
        chunks = sorted((c.offsets[0], c.sizes[0]) for c in meta.chunks)
        assert chunks == [(0, half), (half, rows - half)], (key, chunks)
        assert all(tuple(c.sizes[1:]) == tuple(meta.size[1:]) for c in meta.chunks), key
        files = {
            info.relative_path for index, info in metadata.storage_data.items() if index.fqn == key
        }  # fmt: skip
        assert len(files) == 2, (key, files)


def test_replicas_must_divide_the_world(trained, capsys):
    config, runs = trained
    proc = _launch(config, "run.replicas=3", "run.name=one")
    assert proc.returncode != 0 and "run.replicas=3 does not divide WORLD_SIZE=2" in proc.stderr
