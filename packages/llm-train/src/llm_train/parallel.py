"""Parallelism and memory savers applied to ``model.blocks``, in torchtitan's order.

Order matters: float8 training swaps the linear layers first (FSDP then shards the swapped
modules' weights), activation checkpointing wraps each block first (so compile traces the
recomputation as part of the block), then each block is compiled (before sharding, so FSDP's
hooks and collectives stay outside the compiled graphs), then FSDP2 shards each block and
finally the root (which groups whatever is left: embeddings, final norm, output head).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from llm_formats.device import resolve_device
from llm_train.config import TrainConfig

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

__all__ = [
    "apply_activation_checkpointing",
    "apply_compile",
    "apply_float8",
    "apply_fsdp",
    "check_float8_device",
    "parallelize",
]

FLOAT8_MIN_CAPABILITY = (8, 9)  # Ada and Hopper: the first GPUs with float8 tensor cores

log = logging.getLogger(__name__)


def apply_float8(model: nn.Module, skip: tuple[str, ...] = ()) -> int:
    """Swap ``model``'s ``nn.Linear`` layers for torchao's ``Float8Linear`` (dynamic tensorwise
    scaling: inputs, weights and output gradients cast to float8 for each matmul; the master
    weights stay in their dtype). Returns the number of layers converted.

    Left out: layers whose in/out features are not multiples of 16 (float8 matmuls need it) and
    those whose name contains a string in ``skip``. The swap itself needs no GPU.
    """
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError as err:
        raise ImportError(
            f"TrainConfig.float8 needs torchao: install llm-train[ao] (import failed: {err})"
        ) from err

    def keep(module: nn.Module, name: str) -> bool:
        dims_ok = module.in_features % 16 == 0 and module.out_features % 16 == 0
        return isinstance(module, nn.Linear) and dims_ok and not any(s in name for s in skip)

    before = sum(isinstance(m, nn.Linear) for m in model.modules())
    convert_to_float8_training(model, module_filter_fn=keep)
    after = sum(type(m) is nn.Linear for m in model.modules())
    log.info("float8: %d of %d linear layers converted", before - after, before)
    return before - after


def check_float8_device(device_type: str) -> None:
    """Raise unless float8 matmuls can run here: CUDA with compute capability 8.9 or newer."""
    if device_type != "cuda" or not torch.cuda.is_available():
        raise ValueError(
            f"TrainConfig.float8=True needs a CUDA GPU with compute capability >= 8.9 "
            f"(e.g. L4, RTX 4090, H100); this run is on {device_type!r}"
        )
    capability = torch.cuda.get_device_capability()
    if capability < FLOAT8_MIN_CAPABILITY:
        raise ValueError(
            f"TrainConfig.float8=True needs compute capability >= 8.9; "
            f"{torch.cuda.get_device_name()} has {capability[0]}.{capability[1]}"
        )


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
    """Apply, as ``config`` asks: float8 linears, activation checkpointing, then compile, then
    FSDP2 on ``mesh``.

    With FSDP, ``config.precision`` picks the parameter dtype (bf16 on CUDA only: see
    ``precision.py``). ``config.float8`` is checked against the device first (the mesh's, else
    the model's; a model on the meta device will be materialised on CUDA if there is one).
    """
    if config.float8:
        device_type = mesh.device_type if mesh is not None else _device_type(model)
        check_float8_device(device_type)
        apply_float8(model, config.float8_skip)
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    if config.compile:
        apply_compile(model)
    if mesh is not None:
        bf16 = config.precision == "bf16" and mesh.device_type == "cuda"
        apply_fsdp(model, mesh, param_dtype="bf16" if bf16 else "fp32")
    return model


def _device_type(model: nn.Module) -> str:
    device = next(model.parameters()).device
    if device.type == "meta":
        return resolve_device("auto", cuda_available=torch.cuda.is_available())
    return device.type


def materialize(model: nn.Module, device: torch.device, seed: int) -> None:
    """Allocate a model built on the meta device (and sharded) on ``device``, then initialise it
    with the trainable-model protocol's ``init_weights(seed=seed)``.

    ``init_weights`` must give each parameter values that depend only on ``seed`` and the
    parameter (not on the rank or world size) and write only the local shard of a sharded
    one, so every rank initialises its own shards with no collective and no full state dict,
    and every world size starts from the weights one process would.
    """
    model.to_empty(device=device)
    with torch.no_grad():
        model.init_weights(seed=seed)
