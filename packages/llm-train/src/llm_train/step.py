"""One optimizer step: forward and backward over micro-batches, clip, guard, update."""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
from torch import nn

from llm_train.config import TrainConfig
from llm_train.guard import SpikeGuard
from llm_train.precision import autocast

__all__ = ["train_step"]


def train_step(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    *,
    guard: SpikeGuard | None = None,
) -> dict[str, float]:
    """Accumulate gradients over ``batches``, clip them and take one optimizer step.

    The update is skipped (gradients dropped, optimizer untouched) when the loss or gradient norm
    is not finite and ``config.nan_policy == "skip"``, or when ``guard`` flags a spike. The LR
    schedule advances either way, so the step counter and the data position stay in lockstep.
    Under ``torch.distributed`` the logged loss is the mean over ranks, so every rank takes the
    same skip decision.

    Args:
        model: Meets the trainable-model protocol: ``model(input_ids, labels=labels)`` returns a
            dict with ``"loss"`` (and parts to log) or a scalar loss tensor.
        batches: ``grad_accum_steps`` dicts with ``input_ids`` and ``labels`` LongTensor[B, T].
        optimizer: Built by ``build_optimizer``.
        scheduler: Built by ``build_scheduler``.
        config: Supplies ``grad_clip``, ``precision``, ``nan_policy``.
        guard: Optional loss-spike guard.

    Returns:
        ``loss`` and its parts (means over micro-batches and ranks), ``grad_norm``, ``lr`` (used by
        this step), ``skipped`` (0/1), ``skipped_nan``, ``skipped_spike``.

    Raises:
        FloatingPointError: non-finite loss or gradient norm under ``nan_policy="stop"``.
    """
    device = next(model.parameters()).device
    lr = optimizer.param_groups[0]["lr"]
    optimizer.zero_grad(set_to_none=True)
    parts = _accumulate(model, batches, device, config.precision)
    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
    grad_norm = _to_float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
    loss = parts["loss"]
    nan = not (math.isfinite(loss) and math.isfinite(grad_norm))
    if nan and config.nan_policy == "stop":
        raise FloatingPointError(f"non-finite loss={loss} or grad_norm={grad_norm}")
    spike = not nan and guard is not None and guard.is_spike(loss)
    if nan or spike:
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()
    else:
        optimizer.step()
        scheduler.step()
        if guard is not None:
            guard.accept(loss)
    return {
        **parts,
        "grad_norm": grad_norm,
        "lr": lr,
        "skipped": float(nan or spike),
        "skipped_nan": float(nan),
        "skipped_spike": float(spike),
    }


def _accumulate(
    model: nn.Module, batches: list[dict[str, torch.Tensor]], device: torch.device, precision: str
) -> dict[str, float]:
    """Forward + backward each micro-batch; returns the mean of each loss part."""
    sums: dict[str, torch.Tensor] = {}
    n = len(batches)
    for i, batch in enumerate(batches):
        if hasattr(model, "set_requires_gradient_sync"):
            # FSDP2: reduce-scatter gradients only on the last micro-batch.
            model.set_requires_gradient_sync(i == n - 1)
        input_ids = batch["input_ids"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        with autocast(device, precision):
            out = model(input_ids, labels=labels)
        out = out if isinstance(out, dict) else {"loss": out}
        (out["loss"] / n).backward()
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + value.detach().float() / n
    keys = sorted(sums)
    stacked = torch.stack([sums[k] for k in keys])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.tolist(), strict=True))


def _to_float(norm: torch.Tensor) -> float:
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)
