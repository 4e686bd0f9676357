"""AdamW with decoupled weight decay on matrices only."""

from __future__ import annotations

import torch
from torch import nn

from llm_train.config import TrainConfig

__all__ = ["build_optimizer", "split_decay_params"]


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


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters in two groups (with and without weight decay).

    Args:
        model: Any module; call after ``parallelize`` so FSDP's sharded parameters are used.
        config: Supplies ``lr``, ``betas``, ``eps``, ``weight_decay``.

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
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)
