"""The optimizers a config names (AdamW, Lion, 8-bit AdamW), over the same parameter groups:
decoupled weight decay on matrices only."""

from __future__ import annotations

import torch
from torch import nn

from llm_train.config import TrainConfig
from llm_train.lion import Lion

__all__ = ["build_optimizer", "optimizer_state_bytes", "split_decay_params"]


def split_decay_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split trainable parameters into (decayed, not decayed).

    Weight decay pulls weights toward zero; that is wanted for matrices but harms gains of norms,
    biases (1-D) and embedding rows (rare tokens would be decayed to nothing between updates).
    A tied output head shares the embedding's Parameter, so it is not decayed either.
    """
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    decay, no_decay = [], []
    for param in model.parameters():  # deduplicated: tied weights appear once
        if not param.requires_grad:
            continue
        if param.ndim < 2 or id(param) in embedding_ids:
            no_decay.append(param)
        else:
            decay.append(param)
    return decay, no_decay


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``model``'s parameters in two groups (with and without decay).

    - ``adamw``: ``torch.optim.AdamW`` (foreach; DTensor-aware under FSDP2).
    - ``lion``: ``llm_train.lion.Lion`` (``betas``, no ``eps``).
    - ``adamw8bit``: torchao's ``AdamW8bit``: both moments in 8 bits with one scale per block of
      256 values (parameters under 4096 values keep fp32 moments); its LR is a tensor that the
      scheduler fills. Needs the ``[ao]`` extra. It runs on CPU and CUDA (torchao compiles its
      per-parameter step with ``torch.compile``, so the first step of each shape is slow).

    Args:
        model: Any module; call after ``parallelize`` so FSDP's sharded parameters are used.
        config: Supplies ``optimizer``, ``lr``, ``betas``, ``eps``, ``weight_decay``.

    Returns:
        The optimizer; empty groups are left out.
    """
    decay, no_decay = split_decay_params(model)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    if config.optimizer == "lion":
        return Lion(groups, lr=config.lr, betas=config.betas)
    if config.optimizer == "adamw8bit":
        return _adamw8bit()(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


def _adamw8bit() -> type[torch.optim.Optimizer]:
    try:
        from torchao.optim import AdamW8bit
    except ImportError as err:
        raise ImportError(
            "TrainConfig.optimizer='adamw8bit' needs torchao: install llm-train[ao] "
            f"(import failed: {err})"
        ) from err
    return AdamW8bit


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's state on this rank (quantized states count their codes,
    scales and code books: the tensors a tensor subclass is made of)."""
    return sum(
        _tensor_bytes(value)
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


def _tensor_bytes(t: torch.Tensor) -> int:
    if hasattr(t, "to_local"):  # DTensor: this rank's shard
        t = t.to_local()
    if hasattr(t, "__tensor_flatten__"):  # a subclass, e.g. torchao's OptimState8bit
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()
