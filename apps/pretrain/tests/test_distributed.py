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


def test_two_ranks_train_like_one_process_with_the_same_global_batch(prepared):
    config, runs = prepared
    _copy(runs, "two")
    _copy(runs, "one")
    args = ["--config", str(config), "train", "train.steps=10"]
    proc = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "--no-python",
         str(BIN / "pretrain"), *args, "run.name=two"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*args, "run.name=one", "loader.batch_size=16"]) == 0
    two, one = runs / "two", runs / "one"
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    train = json.loads((two / "stages.json").read_text())["train"]
    assert train["world_size"] == 2 and train["global_batch"] == 16
    shards = sorted(p.name for p in (two / "checkpoints" / "step_000010").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    steps = [r["step"] for r in read_metrics(two / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 10  # each logged step once, rank 0 only
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)


def test_other_stages_refuse_under_torchrun(prepared, monkeypatch, capsys):
    config, _ = prepared
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["--config", str(config), "eval"]) == 1
    err = capsys.readouterr().err
    assert "only the train stage runs" in err and "pretrain curate tokenizer shards" in err
