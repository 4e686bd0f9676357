"""The app under torchrun: process group, device, mesh, and the rule for what runs distributed.

The train and eval stages run on several processes. torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT) gives the process group: NCCL on CUDA, gloo on CPU; each process
takes the GPU of its local rank; the mesh is 1-D data parallel over all processes (FSDP2), or
replicas x shards (HSDP). Train shards the model over it; eval loads the weights on every rank
(whole, or sharded when they would not fit: ``eval.shard``), each rank scores a share of the
requests and rank 0 writes the results, the same as one process's.
The other stages are single-process work on shared files: under torchrun they refuse with a
message naming the command to run instead, rather than running N times on the same files.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from pretrain.rundir import RunError

__all__ = ["Dist", "current", "launched_world_size", "process_group"]

DISTRIBUTED_STAGES = ("train", "eval")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; world 1 and no mesh in a plain single process."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None
    mesh: Any = None  # torch DeviceMesh

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. an error rank 0 found, so all ranks stop)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


_CURRENT = Dist()


def current() -> Dist:
    """The job this process belongs to (set inside ``process_group``)."""
    return _CURRENT


def launched_world_size() -> int:
    """WORLD_SIZE from torchrun's environment (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group(
    device: torch.device, replicas: int = 1, timeout_s: float = 1800.0
) -> Iterator[Dist]:
    """Join torchrun's process group for the body; leave it (and reset ``current``) after.

    ``device`` is the run's device type (``stages.pick_device``); on CUDA each process takes
    the GPU of its LOCAL_RANK.

    The mesh is 1-D over all processes (FSDP), or ``replicas x WORLD_SIZE / replicas``
    (hybrid sharding: FSDP2 shards over the second dimension and replicates over the first).
    """
    global _CURRENT
    world = launched_world_size()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.type == "cuda"
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(
        "nccl" if cuda else "gloo", store=_attempt_store(rank, world, timeout),
        rank=rank, world_size=world, timeout=timeout,
    )  # fmt: skip
    try:
        mesh = _mesh(device.type, world, replicas)
        _CURRENT = Dist(rank=rank, world=world, device=device, mesh=mesh)
        yield _CURRENT
    finally:
        _CURRENT = Dist()
        dist.destroy_process_group()


def _mesh(device_type: str, world: int, replicas: int):
    from torch.distributed.device_mesh import init_device_mesh

    if replicas == 1:
        return init_device_mesh(device_type, (world,), mesh_dim_names=("dp",))
    if world % replicas:
        raise RunError(f"run.replicas={replicas} does not divide WORLD_SIZE={world}")
    shape = (replicas, world // replicas)
    return init_device_mesh(device_type, shape, mesh_dim_names=("replicate", "shard"))


def _attempt_store(rank: int, world: int, timeout: datetime.timedelta) -> dist.Store:
    """torchrun's store, under a prefix of this restart attempt.

    After a restart (``--max-restarts``) the store can still hold the addresses the previous
    attempt's processes published; a rank that read one before its peer wrote the new one
    connected to a dead process ("Connection refused"). Each attempt gets its own keys.
    """
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":  # torchrun's agent serves it
        base = dist.TCPStore(host, port, world, is_master=False, timeout=timeout)
    else:
        base = dist.TCPStore(host, port, world, is_master=rank == 0, timeout=timeout,
                             multi_tenant=True)  # fmt: skip
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"pretrain/attempt_{attempt}", base)


def refuse_undistributed(names: list[str]) -> None:
    """Under torchrun only the train and eval stages run: say what to run instead for the
    others."""
    others = [n for n in names if n not in DISTRIBUTED_STAGES]
    if others:
        raise RunError(
            f"under torchrun (WORLD_SIZE={launched_world_size()}) only the train and eval "
            f"stages run; asked for {', '.join(names)}. Run the single-process stages first "
            f"with `pretrain curate tokenizer shards` (no torchrun), then `torchrun ... "
            f"pretrain train eval`, then `pretrain report`"
        )
