"""`pretrain plan`: the train stage's first step at any world size, simulated on one CPU.

What runs is the train stage's own code path, on torch's fake process group (every collective
returns at once, nothing is sent) and fake tensors (shapes, dtypes and devices, no storage):

  mesh       ``pretrain.distributed._mesh``: 1-D FSDP, or run.replicas x (world / replicas) HSDP
  model      ``llm_model.Transformer`` built on the meta device
  sharding   ``llm_train.parallel``: activation checkpointing, then FSDP2 per block, then the root
  init       ``llm_train.parallel.materialize``: allocate this rank's shards, ``init_weights(seed)``
  step       ``llm_train.step.train_step`` over train.grad_accum_steps micro-batches, with
             ``build_optimizer`` / ``build_scheduler``
  checkpoint DCP's ``DefaultSavePlanner`` over the state the trainer saves: what this rank writes

``FSDPMemTracker`` (torch.distributed._tools, as torchtitan's memory estimator uses it) records
the bytes live on this rank at the step's peak, by category; a dispatch mode counts every
collective with its bytes. The simulated rank is rank 0: FSDP2 pads each parameter to a multiple
of the shard count and rank 0 holds the first (never smaller) chunk, so it is a largest rank.

The fake device is the CPU: FSDP2 asks the CUDA driver for the current device, so a fake "cuda"
mesh fails on a machine without one. Bytes per rank do not depend on it; what CUDA would change
is reproduced: bf16 parameters (FSDP2's MixedPrecisionPolicy, fp32 master weights and gradient
reduction) and bf16 autocast, as the trainer uses on CUDA. ``torch.compile`` and float8 are not
simulated (compile changes temporaries, not the categories counted here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from llm_train import TrainConfig
from llm_train.optimizer import build_optimizer
from llm_train.parallel import apply_activation_checkpointing, apply_fsdp, materialize
from llm_train.schedule import build_scheduler
from llm_train.step import train_step
from pretrain.config import PretrainConfig
from pretrain.distributed import _mesh
from pretrain.rundir import RunError

__all__ = [
    "CATEGORIES",
    "Collective",
    "StepPlan",
    "plan_step",
    "run_plan",
    "simulated_train_config",
]

log = logging.getLogger(__name__)

# The report's categories, from FSDPMemTracker's reference types (_FSDPRefType values).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "parameters": ("Sharded Param",),  # this rank's fp32 master shards
    "gathered parameters": ("Unsharded Param", "All Gather"),  # bf16 blocks + gather buffers
    "gradients": ("Sharded Grad", "Unsharded Grad", "Reduce Scatter"),
    "optimizer state": ("OptState",),
    "activations": ("Activation",),
    "temporaries": ("Temp", "Buffer", "Inputs"),
}


@dataclass(frozen=True)
class Collective:
    """One kind of collective in a step, as rank 0 issues it.

    ``bytes`` is the tensor a rank hands to or gets from the collective (an all-gather's output,
    a reduce-scatter's input, an all-reduce's tensor); ``wire_bytes`` what a ring algorithm
    sends per rank for it: (n - 1) / n of that, twice for an all-reduce.
    """

    op: str
    group_size: int
    count: int
    bytes: int
    wire_bytes: int


@dataclass(frozen=True)
class StepPlan:
    """One simulated training step on rank 0 of ``world_size`` ranks."""

    world_size: int
    mesh_shape: tuple[int, ...]
    params: int  # the model's parameter count
    local_params: int  # elements of this rank's parameter shards (with FSDP2's padding)
    memory: dict[str, int]  # bytes live at the step's peak, by CATEGORIES
    peak: int
    collectives: list[Collective]
    checkpoint_bytes: int  # what this rank writes to a DCP checkpoint (model + optimizer)
    checkpoint_items: int
    seconds: float


def simulated_train_config(config: TrainConfig) -> TrainConfig:
    """The train config as the simulated step runs it: no host syncs (a fake tensor has no
    values to read), so non-finite checks and the spike guard are off; nothing else changes."""
    return dataclasses.replace(config, nan_policy="stop", spike_k=0.0, compile=False)


def plan_step(
    build_model,
    train: TrainConfig,
    *,
    world_size: int,
    replicas: int,
    seq_len: int,
    micro_batch: int,
    vocab_size: int,
) -> StepPlan:
    """Simulate the first training step of rank 0 in a fake world of ``world_size`` ranks.

    Args:
        build_model: Builds the model (called under ``torch.device("meta")``).
        train: The run's train config (optimizer, precision, activation checkpointing,
            grad_accum_steps).
        world_size: Ranks of the simulated job.
        replicas: HSDP replica groups (1: FSDP over every rank), as ``run.replicas``.
        seq_len: Tokens per sample.
        micro_batch: Samples per micro-batch and rank (``loader.batch_size``).
        vocab_size: Token ids of the fake batches are drawn below it.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    start = time.perf_counter()
    train = simulated_train_config(train)
    with _fake_world(world_size):
        mesh = _mesh("cpu", world_size, replicas)  # real tensors: the mesh is built outside
        # DTensor warns that its random ops may lack support on a CPU mesh: init_weights draws
        # fake values, whose randomness the plan never reads
        with FakeTensorMode(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "DTensor random operators", UserWarning)
            return _plan_on_mesh(build_model, train, mesh, micro_batch, seq_len, vocab_size, start)


def _plan_on_mesh(build_model, train, mesh, micro_batch, seq_len, vocab_size, start) -> StepPlan:
    with torch.device("meta"):
        model = build_model()
    params = sum(p.numel() for p in model.parameters())
    _shard(model, mesh, train)
    materialize(model, torch.device("cpu"), train.seed)  # the trainer's: each rank its shards
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, train)
    _warm_up(model, optimizer, train)
    accum = train.grad_accum_steps
    batches = [_fake_batch(micro_batch, seq_len, vocab_size) for _ in range(accum)]
    memory, collectives = _tracked_step(model, batches, optimizer, scheduler, train)
    checkpoint_bytes, items = _checkpoint_plan(model, optimizer)
    local = sum(p.to_local().numel() for p in model.parameters())
    return StepPlan(
        world_size=mesh.size(),
        mesh_shape=tuple(mesh.shape),
        params=params,
        local_params=local,
        memory=memory,
        peak=sum(memory.values()),
        collectives=collectives,
        checkpoint_bytes=checkpoint_bytes,
        checkpoint_items=items,
        seconds=time.perf_counter() - start,
    )


@contextlib.contextmanager
def _fake_world(world_size: int) -> Iterator[None]:
    """torch's fake process group as rank 0 of ``world_size``: collectives return at once."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RunError("pretrain plan: a process group is already initialised (under torchrun?)")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _shard(model: nn.Module, mesh, train: TrainConfig) -> None:
    """``llm_train.parallel.parallelize`` as it runs on CUDA (the mesh here is a CPU one, where
    parallelize would choose fp32): activation checkpointing, then FSDP2 in the run's precision."""
    if train.activation_checkpointing:
        apply_activation_checkpointing(model)
    apply_fsdp(model, mesh, param_dtype=train.precision)


def _warm_up(model: nn.Module, optimizer: torch.optim.Optimizer, train: TrainConfig) -> None:
    """Gradient clipping and one update on zero gradients, untracked, before the step to measure.

    - The optimizer creates its state lazily in its first step; the step to measure is one
      where the state exists (any later step).
    - DTensor derives each op's output metadata by running it on global-shape fake tensors
      (``_propagate_tensor_meta_non_cached``), once per op and shapes, then caches it. On a GPU
      those are fake, but here they live in the plan's own fake mode and FSDPMemTracker counts
      them: clipping's foreach norm over every gradient showed up as the whole model in fp32
      (263 GiB for Llama-3-70B). Running clip and the update once fills the cache.
    """
    from llm_train.step import _clip  # the trainer's clipping, so the cached ops are its own

    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    _clip(model, train.grad_clip, torch.device("cpu"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _fake_batch(micro_batch: int, seq_len: int, vocab_size: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab_size, (micro_batch, seq_len))
    return {"input_ids": ids, "labels": ids.clone()}


def _tracked_step(model, batches, optimizer, scheduler, train: TrainConfig):
    """``train_step`` under FSDPMemTracker and the collective counter: (peak by category,
    collectives)."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

    tracker = FSDPMemTracker(mod=model, optm=optimizer)
    tracker.track_inputs(tuple(b["input_ids"] for b in batches))
    counter = _CollectiveCounter()
    # bf16 autocast as on CUDA (llm_train.precision.autocast turns it off on a CPU device)
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=train.precision == "bf16")
    with tracker, counter, cast:
        train_step(model, batches, optimizer, scheduler, train, sync=False)
    snapshot = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    named = {getattr(k, "value", k): v for k, v in snapshot.items()}
    memory = {cat: sum(named.get(k, 0) for k in keys) for cat, keys in CATEGORIES.items()}
    return memory, counter.collectives()


def _checkpoint_plan(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """(bytes, items) this rank would write to a DCP checkpoint: the save planner's local plan
    over the state ``llm_train.checkpoint`` saves. Nothing is written."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
    from torch.distributed.checkpoint.planner import WriteItemType

    from llm_train.checkpoint import _state  # the trainer's checkpoint state: one definition

    state = _state(model, optimizer)
    planner = DefaultSavePlanner()
    # The planner computes shard offsets with small real tensors (torch.arange, then int()):
    # under the fake mode they would have no values. It reads only metadata of the state.
    with unset_fake_temporarily():
        planner.set_up_planner(state, is_coordinator=True)
        plan = planner.create_local_plan()
    nbytes = 0
    for item in plan.items:
        if item.type == WriteItemType.BYTE_IO or item.tensor_data is None:
            continue
        numel = 1
        for size in item.tensor_data.chunk.sizes:
            numel *= size
        nbytes += numel * item.tensor_data.properties.dtype.itemsize
    return nbytes, len(plan.items)


# c10d op -> (report name, argument holding the tensor whose bytes count). FSDP2 calls the
# in-place ops (c10d::*_), DTensor's redistribute (e.g. the gradient norm) the functional ones.
_OPS = {
    "_allgather_base_": ("all_gather", 0),  # (output, input, group, ...)
    "allgather_into_tensor_coalesced_": ("all_gather", 0),
    "allgather_": ("all_gather", 0),
    "_reduce_scatter_base_": ("reduce_scatter", 1),  # (output, input, group, ...)
    "reduce_scatter_tensor_coalesced_": ("reduce_scatter", 1),
    "allreduce_": ("all_reduce", 0),  # (tensors, group, ...)
    "broadcast_": ("broadcast", 0),
    "all_gather_into_tensor": ("all_gather", 0),  # functional: (input, group_size, group_name)
    "reduce_scatter_tensor": ("reduce_scatter", 0),  # (input, reduce_op, group_size, group_name)
    "all_reduce": ("all_reduce", 0),  # (input, reduce_op, group_name)
    "all_reduce_coalesced": ("all_reduce", 0),
    "broadcast": ("broadcast", 0),
}
_GATHERS = {"all_gather_into_tensor"}  # functional all-gathers: the output is n x the input


class _CollectiveCounter(TorchDispatchMode):
    """Counts the c10d collectives issued under it, with the bytes of their tensors."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, int], list[int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.distributed.tensor import DTensor

        if any(t is DTensor for t in types):
            # Let DTensor run first (as CommDebugMode does): it desugars into the collectives
            # it needs (e.g. the gradient norm's all-reduce), which then come back here.
            return NotImplemented
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        if func.namespace in ("c10d", "_c10d_functional") and name in _OPS:
            self._record(name, args)
        return func(*args, **kwargs)

    def _record(self, name: str, args) -> None:
        op, index = _OPS[name]
        n = next(_group_size(a) for a in args if _is_group(a))
        nbytes = _nbytes(args[index]) * (n if name in _GATHERS else 1)
        entry = self._seen.setdefault((op, n), [0, 0])
        entry[0] += 1
        entry[1] += nbytes

    def collectives(self) -> list[Collective]:
        out = []
        for (op, n), (count, nbytes) in sorted(self._seen.items()):
            factor = 2 if op == "all_reduce" else 1
            out.append(Collective(op, n, count, nbytes, factor * nbytes * (n - 1) // n))
        return out


def _is_group(arg) -> bool:
    # a reduce op is a string too ("sum", "avg"); group names are numbers or set by DeviceMesh
    if isinstance(arg, str):
        return arg not in ("sum", "avg", "product", "min", "max", "premul_sum")
    return isinstance(arg, torch.ScriptObject)


def _group_size(group: torch.ScriptObject | str) -> int:
    """Ranks in a c10d op's group: a TorchScript ProcessGroup (in-place ops) or its registered
    name (functional ops)."""
    if isinstance(group, str):
        from torch.distributed.distributed_c10d import _resolve_process_group

        return _resolve_process_group(group).size()
    return dist.ProcessGroup.unbox(group).size()


def _nbytes(t) -> int:
    if isinstance(t, (list, tuple)):
        return sum(_nbytes(x) for x in t)
    return t.numel() * t.element_size()


def model_for_plan(config: PretrainConfig):
    """The model config the plan builds: the run's, checked against the plan's sequence length."""
    model = config.model
    if config.shards.seq_len > model.max_seq_len:
        raise RunError(
            f"shards.seq_len={config.shards.seq_len} exceeds model.max_seq_len="
            f"{model.max_seq_len} of model_preset={config.model_preset}"
        )
    return model


def run_plan(config: PretrainConfig, command: str) -> str:
    """`pretrain plan`: simulate rank 0's first step of the train stage as ``config`` sets it
    up on ``plan.world_size`` ranks; returns the markdown tables (also written to plan.out)."""
    from llm_model import Transformer
    from pretrain.plan_report import memory_estimate, render

    model_config = model_for_plan(config)
    world, replicas = config.plan.world_size, config.run.replicas
    log.info("plan: %s on %d ranks (%d replicas)", config.model_preset, world, replicas)
    # llm_train.precision warns that CPU runs fp32: here autocast is entered as on CUDA
    logging.getLogger("llm_train.precision").setLevel(logging.ERROR)
    plan = plan_step(
        lambda: Transformer(model_config),
        config.train,
        world_size=world,
        replicas=replicas,
        seq_len=config.shards.seq_len,
        micro_batch=config.loader.batch_size,
        vocab_size=model_config.vocab_size,
    )
    text = render(config, plan, memory_estimate(config, plan.mesh_shape[-1]), command)
    if config.plan.out:
        from llm_formats.atomic import atomic_write_text

        Path(config.plan.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(config.plan.out), text)
    return text
