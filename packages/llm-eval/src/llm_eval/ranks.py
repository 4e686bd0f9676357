"""Scoring divided among the ranks of a ``torch.distributed`` job, gathered back in order.

Every rank forms the same batches one process would (`scoring._batches` is deterministic), and
scores only the whole batches assigned to it (`assign`: balanced by cost, not by count). Each
request is thus computed in the same batch layout, by the same kernels, as in one process, and
the per-request results gathered back (`gather_rows`) are laid out in request order on every
rank, so any sum over them (bits per byte, a task's metrics) runs in the one-process order and
does not depend on the number of ranks.

With ``lockstep`` (a sharded model, whose FSDP2 all-gathers are collective) every rank runs the
same number of forwards: the ranks with fewer batches run dummy ones (`steps`);
`shard_model` shards a model so that this is all its collectives need.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist
from torch import nn

__all__ = ["Ranks", "assign", "fsdp_entry_points", "shard_model"]


@dataclass(frozen=True)
class Ranks:
    """This process's share of the scoring.

    Attributes:
        rank: This process's rank in the default process group.
        world: Number of ranks that share the requests.
        lockstep: Every rank runs the same number of forward passes (pad with dummy batches):
            needed when the model is sharded (FSDP2), whose forward is a collective.
    """

    rank: int = 0
    world: int = 1
    lockstep: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"Ranks: rank={self.rank} must be in [0, world={self.world})")

    @classmethod
    def of_process_group(cls, lockstep: bool = False) -> Ranks:
        """The default process group's rank and size (one rank when none is initialised)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), lockstep=lockstep)

    @property
    def main(self) -> bool:
        return self.rank == 0


def assign(costs: Sequence[float], world: int) -> list[int]:
    """The rank of each item: greedy longest-processing-time (costliest item first, to the least
    loaded rank; ties to the lower index and rank), so the ranks' total costs differ by at most
    one item's cost. Deterministic: every rank computes the same assignment, with no messages.
    """
    loads = [(0.0, r) for r in range(world)]  # heap of (load, rank)
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, r = heapq.heappop(loads)
        owner[i] = r
        heapq.heappush(loads, (load + costs[i], r))
    return owner


def steps(owner: Sequence[int], ranks: Ranks) -> tuple[list[int], int]:
    """(indices of this rank's items in order, number of forward steps it runs): its own count,
    or in lockstep the largest count of any rank (the rest are dummy steps)."""
    mine = [i for i, r in enumerate(owner) if r == ranks.rank]
    if not ranks.lockstep:
        return mine, len(mine)
    counts = [0] * ranks.world
    for r in owner:
        counts[r] += 1
    return mine, max(counts, default=0)


def gather_rows(rows: list[Any], ranks: Ranks) -> list[Any]:
    """Every rank's ``rows`` concatenated in rank order, on every rank (small per-request
    results: a few numbers each, never tensors of the model's size)."""
    if ranks.world == 1:
        return rows
    parts: list[Any] = [None] * ranks.world
    dist.all_gather_object(parts, rows)
    return [row for part in parts for row in part]


def shard_model(model: nn.Module, mesh: Any) -> nn.Module:
    """Shard a model built on the meta device over ``mesh`` with FSDP2, for scoring only (then
    ``to_empty`` and load its weights): each of ``model.blocks`` is gathered for its forward and
    freed after it; the root's own parameters (embeddings, final norm, head: small next to the
    blocks) stay gathered after their first use, so that the head, which scoring calls a
    varying number of times per batch (`scoring._target_logprobs`), runs no collective and the
    ranks' collectives match whenever their forwards do (score with ``lockstep``).
    ``hidden_states`` and ``logits`` count as forwards (FSDP2 gathers for ``forward`` only).
    """
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, reshard_after_forward=False)
    return fsdp_entry_points(model)


def fsdp_entry_points(model: nn.Module) -> nn.Module:
    """Make ``hidden_states`` and ``logits`` of an FSDP2 root module gather its parameters as
    ``forward`` does (FSDP2 hooks ``forward`` only); once per model, and a no-op for a model
    that is not ``fully_shard``-ed.

    Scoring and the generation engine call these two directly. Without it a model sharded for
    training fails there after its first backward, which reshards the root's parameters
    (embeddings, head): "aten.embedding.default got mixed torch.Tensor and DTensor".
    """
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    if not isinstance(model, FSDPModule) or getattr(model, "_llm_eval_entry_points", False):
        return model
    for name in ("hidden_states", "logits"):
        if callable(getattr(model, name, None)):
            register_fsdp_forward_method(model, name)
    model._llm_eval_entry_points = True  # registering twice would gather twice per call
    return model
