"""FSDP2 on CPU: 2 gloo ranks (forked processes) against a single-process reference."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint  # noqa: F401  (imported once here, inherited by the forks)
import torch.distributed.fsdp  # noqa: F401
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh

from llm_train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from llm_train.config import TrainConfig
from llm_train.metrics import read_metrics
from llm_train.optimizer import build_optimizer
from llm_train.parallel import apply_activation_checkpointing, apply_fsdp, materialize
from llm_train.schedule import build_scheduler
from llm_train.step import to_floats, train_step
from llm_train.trainer import Trainer

WORLD = 2


def _setup(model_cls, mesh=None):
    torch.manual_seed(0)
    model = model_cls(dropout=0.0)
    apply_activation_checkpointing(model)  # before FSDP, as parallelize() orders it
    if mesh is not None:
        apply_fsdp(model, mesh, param_dtype="fp32")
    config = TrainConfig(steps=4, lr=1e-2, precision="fp32", spike_k=0)
    optimizer = build_optimizer(model, config)
    return model, optimizer, build_scheduler(optimizer, config), config


def _full(model):
    return {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}


def _rank_main(rank, init_file, out, model_cls, loader_cls, batch):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        mesh = init_device_mesh("cpu", (WORLD,))
        model, optimizer, scheduler, config = _setup(model_cls, mesh)
        half = {k: v.chunk(WORLD)[rank] for k, v in batch.items()}  # this rank's rows
        metrics = to_floats(train_step(model, [half], optimizer, scheduler, config))
        params = _full(model)
        path = save_checkpoint(
            out / "ckpt", 1, model, optimizer, manifest={}, rank_state={"rank": rank}
        )
        assert latest_checkpoint(out / "ckpt") == path
        fresh, fresh_opt, _, _ = _setup(model_cls, mesh)
        manifest = load_checkpoint(path, fresh, fresh_opt)
        restored = _full(fresh)
        # The whole Trainer sharded: rank 0 logs; every rank's loader position is checkpointed.
        run_config = TrainConfig(
            steps=2, lr=1e-2, precision="fp32", log_every=1, checkpoint_every=1
        )
        loader = loader_cls(batch_size=2, seed=rank)
        Trainer(model_cls(), loader, run_config, out / "run", mesh=mesh).fit()
        # Built on meta, sharded, then each rank draws its own shards of the seeded weights.
        with torch.device("meta"):
            meta = model_cls(dropout=0.0)
        apply_activation_checkpointing(meta)  # wrapped names draw the plain model's weights
        apply_fsdp(meta, mesh, param_dtype="fp32")
        materialize(meta, torch.device("cpu"), seed=0)
        initial = _full(meta)
        if rank == 0:
            torch.save({"metrics": metrics, "params": params, "restored": restored,
                        "rank_states": manifest["rank_states"], "initial": initial},
                       out / "rank0.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_fsdp_two_ranks_match_single_process(toy, tmp_path):
    batch = toy.Loader(batch_size=4).batch(0, 0)
    # Reference first: it also imports what the forks would otherwise each import again.
    model, optimizer, scheduler, config = _setup(toy.Model)
    reference = to_floats(train_step(model, [batch], optimizer, scheduler, config))
    mp.start_processes(
        _rank_main,
        args=(tmp_path / "pg_init", tmp_path, toy.Model, toy.Loader, batch),
        nprocs=WORLD,
        start_method="fork",  # no re-import of torch per rank: seconds saved on 2 cores
    )
    result = torch.load(tmp_path / "rank0.pt")
    # Equal-sized halves: the mean of the two ranks' mean losses is the full-batch mean.
    assert result["metrics"]["loss"] == pytest.approx(reference["loss"], rel=1e-6)
    assert result["metrics"]["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-5)
    single = dict(model.named_parameters())
    assert result["params"].keys() == single.keys()
    for name, value in result["params"].items():
        torch.testing.assert_close(value, single[name].detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(value, result["restored"][name])  # DCP round trip under FSDP
    assert result["rank_states"] == [{"rank": 0}, {"rank": 1}]
    torch.manual_seed(0)
    seeded = dict(toy.Model(dropout=0.0).named_parameters())
    for name, value in result["initial"].items():  # meta-built shards hold the seeded weights
        plain = name.replace("._checkpoint_wrapped_module", "")
        assert torch.equal(value, seeded[plain].detach()), name
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2] and records[-1]["tokens"] == 2 * WORLD * 2 * 8
    last = tmp_path / "run" / "checkpoints" / "step_000002" / "manifest.json"
    manifest = json.loads(last.read_text())
    assert [s["loader"] for s in manifest["rank_states"]] == [{"epoch": 0, "position": 2}] * 2
    assert manifest["world_size"] == WORLD
    assert sorted(n for n in manifest["files"] if n.endswith(".distcp")) == [
        "__0_0.distcp", "__1_0.distcp",
    ]  # fmt: skip


def _uneven_batch(loader_cls):
    """Four rows whose target tokens differ a lot: rank 0 gets rows 0-1, rank 1 rows 2-3."""
    batch = loader_cls(batch_size=4).batch(0, 0)
    batch["labels"][0, 1:] = -100  # rank 0: 1 + 8 targets; rank 1: 5 + 8
    batch["labels"][2, :3] = -100
    return batch


def _uneven_rank_main(rank, init_file, out, model_cls, batch):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model, optimizer, scheduler, config = _setup(model_cls, init_device_mesh("cpu", (WORLD,)))
        config.grad_clip, config.grad_accum_steps = 0.0, 2
        rows = {k: v.chunk(WORLD)[rank] for k, v in batch.items()}
        micro = [{k: v[i : i + 1] for k, v in rows.items()} for i in range(2)]  # one row each
        metrics = to_floats(train_step(model, micro, optimizer, scheduler, config))
        grads = {n: p.grad.full_tensor().clone() for n, p in model.named_parameters()}
        if rank == 0:
            torch.save({"metrics": metrics, "grads": grads}, out / "uneven.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_and_micro_batches_weighted_by_target_tokens(toy, tmp_path):
    batch = _uneven_batch(toy.Loader)
    model, optimizer, scheduler, config = _setup(toy.Model)
    config.grad_clip = 0.0
    reference = to_floats(train_step(model, [batch], optimizer, scheduler, config))
    mp.start_processes(
        _uneven_rank_main,
        args=(tmp_path / "pg_init", tmp_path, toy.Model, batch),
        nprocs=WORLD,
        start_method="fork",
    )
    result = torch.load(tmp_path / "uneven.pt")
    for key in ("loss", "ce", "z_loss", "grad_norm"):
        assert result["metrics"][key] == pytest.approx(reference[key], rel=1e-5), key
    for name, param in model.named_parameters():
        torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-5, atol=1e-7)
