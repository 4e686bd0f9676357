"""`pretrain plan`: the first train step on a fake world, checked against what FSDP2 must do."""

import dataclasses
import math

import pytest
import torch

from llm_model import Transformer, get_preset
from llm_train import TrainConfig
from pretrain.cli import main
from pretrain.config import load_pretrain_config
from pretrain.plan import plan_step
from pretrain.plan_report import render

MODEL = dataclasses.replace(get_preset("debug"), n_layers=2)


def _plan(world, replicas, **train):
    config = TrainConfig(steps=10, activation_checkpointing=True, **train)
    return plan_step(lambda: Transformer(MODEL), config, world_size=world, replicas=replicas,
                     seq_len=32, micro_batch=2, vocab_size=MODEL.vocab_size)  # fmt: skip


def _shapes():
    with torch.device("meta"):
        return [p.shape for p in Transformer(MODEL).parameters()]


def _padded(shard: int) -> int:
    """Elements FSDP2 holds per rank: each parameter's dim 0 padded to a multiple of shard."""
    return sum(math.ceil(s[0] / shard) * math.prod(s[1:]) for s in _shapes())


@pytest.fixture(scope="module")
def fsdp8():
    return _plan(8, 1)


def test_each_rank_holds_its_shard_of_the_fp32_parameters_and_adamw_state(fsdp8):
    shapes = _shapes()
    assert fsdp8.params == sum(math.prod(s) for s in shapes)
    assert fsdp8.local_params == _padded(8)
    assert fsdp8.memory["parameters"] == 4 * fsdp8.local_params
    # exp_avg + exp_avg_sq per parameter, and AdamW's 4-byte step count per tensor
    assert fsdp8.memory["optimizer state"] == 2 * 4 * fsdp8.local_params + 4 * len(shapes)
    assert fsdp8.peak == sum(fsdp8.memory.values())


def test_the_collectives_are_those_fsdp2_must_issue(fsdp8):
    ops = {c.op: c for c in fsdp8.collectives if c.group_size == 8}
    groups = MODEL.n_layers + 1  # one FSDP2 group per block, and the root
    # bf16 gathers of every group, in forward and again in backward (resharded after forward)
    assert ops["all_gather"].count == 2 * groups
    assert ops["all_gather"].bytes == 2 * 2 * 8 * fsdp8.local_params
    # one fp32 reduce-scatter of the gradients per group
    assert ops["reduce_scatter"].count == groups
    assert ops["reduce_scatter"].bytes == 4 * 8 * fsdp8.local_params
    assert ops["reduce_scatter"].wire_bytes == 4 * 7 * fsdp8.local_params
    assert ops["all_reduce"].count >= 2  # the token count and the loss (train_step)
    assert fsdp8.checkpoint_bytes >= 3 * 4 * fsdp8.local_params  # weights + two moments


def test_hsdp_with_lion_keeps_one_state_and_all_reduces_over_replicas():
    plan = _plan(8, 2, optimizer="lion", lr=1e-4)
    assert plan.mesh_shape == (2, 4) and plan.local_params == _padded(4)
    assert plan.memory["optimizer state"] == 4 * plan.local_params  # exp_avg only
    across = [c for c in plan.collectives if c.op == "all_reduce" and c.group_size == 2]
    assert across and across[0].bytes == 4 * plan.local_params  # the sharded fp32 gradients


def test_the_table_renders(fsdp8):
    config = load_pretrain_config(None, ["model.n_layers=2"], sized=False)
    text = render(config, fsdp8, None, "pretrain plan")
    for needle in ("# Dry run: debug on 8 ranks", "| optimizer state |", "| all_gather | 8 |",
                   "**peak**", "DCP save plan"):  # fmt: skip
        assert needle in text, needle


def test_cli_plans_without_a_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no runs/, no tokenizer, no shards
    out = tmp_path / "plan.md"
    argv = ["plan", "model.n_layers=1", "plan.world_size=4", "run.replicas=2",
            "shards.seq_len=16", "loader.batch_size=1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "HSDP: 2 replicas x 2 shards" in capsys.readouterr().out
    assert "| reduce_scatter | 2 |" in out.read_text()
    assert not (tmp_path / "runs").exists()
