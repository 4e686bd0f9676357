"""Weight initialisation schemes: "normal", "scaled" (GPT-2) and "mitchell" (OLMo).

All schemes zero the biases and reset norms to weight 1. Output projections are attn.wo,
the FFN down projection w2 and the MoE experts' w2.

Every random parameter draws from its own ``torch.Generator``, seeded from (run seed, the
parameter's name), and is generated whole on its device. A parameter sharded as a DTensor
(FSDP2's ``Shard(0)``, on a 1-D or a replicate x shard mesh) keeps the slice of that whole
tensor that is its local shard, with no collective: each rank initialises only its shards and
still gets the weights one process would, whatever the world size. Extra memory: the largest
single parameter.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from llm_model.attention import Attention
from llm_model.config import ModelConfig
from llm_model.feedforward import FeedForward
from llm_model.moe import MoE
from llm_model.norm import LayerNorm, RMSNorm

__all__ = ["init_weights", "parameter_seed"]

# Wrappers that add a segment to parameter names (activation checkpointing, torch.compile of a
# whole module): dropped, so a wrapped model draws the same weights as a plain one.
_WRAPPER_SEGMENTS = ("_checkpoint_wrapped_module", "_orig_mod")


@dataclass(frozen=True)
class _Init:
    """N(0, std) (truncated at +-3 std if ``truncate``) when ``std`` is set, else ``value``."""

    std: float | None = None
    truncate: bool = False
    value: float = 0.0


_ZERO, _ONE = _Init(value=0.0), _Init(value=1.0)


def parameter_seed(seed: int, name: str) -> int:
    """The seed of parameter ``name``'s generator: stable across processes and Python runs
    (``hash()`` is salted per process), and different for every name."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _stds(config: ModelConfig, fan_in: int, layer_id: int) -> tuple[float, float]:
    """(std of input projections, std of output projections) in block ``layer_id``."""
    if config.init == "mitchell":
        return fan_in**-0.5, 1.0 / math.sqrt(2 * fan_in * (layer_id + 1))
    if config.init == "scaled":
        return config.init_std, config.init_std / math.sqrt(2 * config.n_layers)
    return config.init_std, config.init_std


def _linear(plan: dict, linear: nn.Linear | None, std: float, truncate: bool) -> None:
    if linear is None:
        return
    plan[linear.weight] = _Init(std, truncate)
    if linear.bias is not None:
        plan[linear.bias] = _ZERO


def _norm(plan: dict, norm: nn.Module) -> None:
    if getattr(norm, "weight", None) is not None:
        plan[norm.weight] = _ONE
    if getattr(norm, "bias", None) is not None:
        plan[norm.bias] = _ZERO


def _plan_block_module(plan: dict, config: ModelConfig, module: nn.Module, layer_id: int) -> None:
    trunc = config.init == "mitchell"
    std_in = _stds(config, config.d_model, layer_id)[0]
    if isinstance(module, (RMSNorm, LayerNorm)):
        _norm(plan, module)
    elif isinstance(module, Attention):
        for lin in (module.wq, module.wk, module.wv):
            _linear(plan, lin, std_in, trunc)
        _linear(plan, module.wo, _stds(config, module.wo.in_features, layer_id)[1], trunc)
    elif isinstance(module, FeedForward):
        for lin in (module.w1, module.w3):
            _linear(plan, lin, std_in, trunc)
        _linear(plan, module.w2, _stds(config, module.w2.in_features, layer_id)[1], trunc)
    elif isinstance(module, MoE):
        _linear(plan, module.router, std_in, trunc)
        for w in (module.w1, module.w3):
            if w is not None:
                plan[w] = _Init(std_in, trunc)
        plan[module.w2] = _Init(_stds(config, module.w2.shape[-1], layer_id)[1], trunc)


def _plan(model: nn.Module) -> dict[nn.Parameter, _Init]:
    """How each parameter of a Transformer starts, following ``model.config.init``."""
    config: ModelConfig = model.config
    trunc = config.init == "mitchell"
    std = config.d_model**-0.5 if trunc else config.init_std
    plan: dict[nn.Parameter, _Init] = {model.tok_emb.weight: _Init(std, trunc)}
    if model.pos_emb is not None:
        plan[model.pos_emb.weight] = _Init(std, trunc)
    if model.output is not None:
        plan[model.output.weight] = _Init(std, trunc)
    for layer_id, block in enumerate(model.blocks):
        for module in block.modules():
            _plan_block_module(plan, config, module, layer_id)
    if model.norm is not None:
        _norm(plan, model.norm)
    return plan


def _canonical(name: str) -> str:
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_SEGMENTS)


def _local_slice(param: torch.Tensor) -> tuple[slice, ...] | None:
    """Where a DTensor's local shard sits in the whole tensor (None: not a DTensor)."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if not isinstance(param, DTensor):
        return None
    shape, offset = compute_local_shape_and_global_offset(
        param.shape, param.device_mesh, param.placements
    )
    return tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))


def _generator(t: torch.Tensor, seed: int) -> torch.Generator:
    """``t``'s device's generator seeded with ``seed``."""
    return torch.Generator(device=t.device).manual_seed(seed)


def _fill(param: torch.Tensor, init: _Init, seed: int) -> None:
    """Initialise ``param`` (its local shard if it is a DTensor) in place."""
    from torch._subclasses.fake_tensor import is_fake

    local = param.to_local() if hasattr(param, "to_local") else param
    if local.is_meta or is_fake(local):
        return  # a dry run (meta or FakeTensorMode): no values to write, nothing to slice
    where = _local_slice(param)
    if init.std is None:
        local.fill_(init.value)
        return
    # The whole parameter, drawn on the device, then this rank's slice of it.
    whole = local
    if where is not None:
        whole = torch.empty(param.shape, dtype=local.dtype, device=local.device)
    generator = _generator(local, seed)
    if init.truncate:
        std = init.std
        nn.init.trunc_normal_(whole, std=std, a=-3 * std, b=3 * std, generator=generator)
    else:
        nn.init.normal_(whole, std=init.std, generator=generator)
    if where is not None:
        local.copy_(whole[where])


@torch.no_grad()
def init_weights(model: nn.Module, seed: int | None = None) -> None:
    """Initialise every parameter of a Transformer in place, following ``model.config.init``.

    Works after ``to_empty()`` on a model built on the meta device (torchtitan style), sharded
    with FSDP2 or not: each rank writes only its own shards, equal to one process's weights.

    Args:
        model: The Transformer (possibly wrapped for activation checkpointing or compiled).
        seed: The run's seed; each parameter's generator is seeded from it and the
            parameter's name (``parameter_seed``). None: ``torch.initial_seed()``, the seed of
            the last ``torch.manual_seed``, so ``torch.manual_seed(s); Transformer(config)``
            gives the weights of ``init_weights(model, seed=s)``.
    """
    seed = torch.initial_seed() if seed is None else seed
    plan = _plan(model)
    for name, param in model.named_parameters():
        if param not in plan:
            raise ValueError(f"init_weights: no initialisation for parameter {name!r}")
        _fill(param, plan[param], parameter_seed(seed, _canonical(name)))
