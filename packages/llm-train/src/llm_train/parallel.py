"""Parallelism and memory savers applied to ``model.blocks``, in torchtitan's order.

Order matters: activation checkpointing wraps each block first (so compile traces the
recomputation as part of the block), then each block is compiled (before sharding, so FSDP's
hooks and collectives stay outside the compiled graphs), then FSDP2 shards each block and
finally the root (which groups whatever is left: embeddings, final norm, output head).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import torch
import torch.distributed as dist
from torch import nn

from llm_train.config import TrainConfig

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

__all__ = ["apply_activation_checkpointing", "apply_compile", "apply_fsdp", "parallelize"]

log = logging.getLogger(__name__)


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Wrap each of ``model.blocks`` so its activations are recomputed in backward.

    The wrapper's state-dict hooks strip its prefix, so checkpoints keep their keys.
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.blocks):
        # preserve_rng_state: dropout masks in the recomputation equal those of the forward.
        model.blocks[i] = checkpoint_wrapper(block, preserve_rng_state=True)


def apply_compile(model: nn.Module) -> None:
    """``torch.compile`` each block in place (``Module.compile`` keeps parameter names)."""
    for block in model.blocks:
        block.compile()


def apply_fsdp(
    model: nn.Module,
    mesh: DeviceMesh,
    *,
    param_dtype: Literal["fp32", "bf16"] = "bf16",
    reshard_after_forward: bool = True,
) -> nn.Module:
    """Shard ``model`` with FSDP2: ``fully_shard`` each of ``model.blocks``, then the root.

    Args:
        model: Module with a ``blocks`` ModuleList, on its target device (or meta).
        mesh: 1-D data-parallel device mesh (FSDP), or 2-D replicate x shard (HSDP).
        param_dtype: ``bf16`` computes in bf16 with fp32 master weights and fp32 gradient
            reduction; ``fp32`` computes in fp32.
        reshard_after_forward: Free gathered block parameters after forward (ZeRO-3); False keeps
            them until backward (ZeRO-2: more memory, fewer all-gathers).

    Returns:
        The same module, now an ``FSDPModule``.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    dtype = torch.bfloat16 if param_dtype == "bf16" else torch.float32
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    # The root is sharded last so it groups the remaining parameters (embeddings, head).
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    return model


def parallelize(model: nn.Module, config: TrainConfig, mesh: DeviceMesh | None = None) -> nn.Module:
    """Apply, as ``config`` asks: activation checkpointing, then compile, then FSDP2 on ``mesh``.

    With FSDP, ``config.precision`` picks the parameter dtype (bf16 on CUDA only: see
    ``precision.py``).
    """
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    if config.compile:
        apply_compile(model)
    if mesh is not None:
        bf16 = config.precision == "bf16" and mesh.device_type == "cuda"
        apply_fsdp(model, mesh, param_dtype="bf16" if bf16 else "fp32")
    return model


def materialize(
    model: nn.Module, device: torch.device, full_state_dict: dict[str, torch.Tensor] | None = None
) -> None:
    """Allocate a model built on the meta device (and sharded) on ``device``, then initialise it.

    Under ``torch.distributed`` the weights come from rank 0's ``full_state_dict`` (a model built
    whole on the CPU with the run's seed), broadcast and sharded: every world size starts from
    the exact weights one process would. Single-process, or without a state dict, the model's
    own ``init_weights()`` runs (the trainable-model protocol's initialiser).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    model.to_empty(device=device)
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        if dist.get_rank() == 0 and full_state_dict is None:
            raise ValueError("materialize: rank 0 needs the full state dict to broadcast")
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        state = full_state_dict if dist.get_rank() == 0 else {}
        set_model_state_dict(model, state, options=options)
    elif full_state_dict is not None:
        model.load_state_dict(full_state_dict)
    else:
        with torch.no_grad():
            model.init_weights()
