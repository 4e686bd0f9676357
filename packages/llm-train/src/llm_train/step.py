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
from llm_train.schedule import group_lr

__all__ = ["IGNORE_INDEX", "finite", "to_floats", "train_step"]

IGNORE_INDEX = -100  # label of a position without a target token (the model protocol's)


def train_step(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    *,
    guard: SpikeGuard | None = None,
    sync: bool = True,
) -> dict[str, torch.Tensor | float]:
    """Accumulate gradients over ``batches``, clip them and take one optimizer step.

    The loss is the mean over every target token (``labels != -100``) of the global batch: all
    micro-batches on all ranks. The update is skipped (gradients dropped, optimizer untouched)
    when the loss or gradient norm is not finite and ``config.nan_policy == "skip"``, or when
    ``guard`` flags a spike. The LR schedule advances either way, so the step counter and the data
    position stay in lockstep. The loss is reduced over ranks, so every rank decides alike.

    Host synchronisation: the step reads loss and gradient norm on the host (one transfer) only
    when a decision needs them: ``nan_policy == "skip"``, an active ``guard`` (``k > 0``), or
    ``sync=True`` with ``nan_policy == "stop"``. Otherwise (``"stop"``, no guard, ``sync=False``)
    it never waits for the device, and the caller must check ``finite(metrics)`` later.

    Args:
        model: Meets the trainable-model protocol: ``model(input_ids, labels=labels)`` returns a
            dict with ``"loss"`` (and parts to log), each a mean over the micro-batch's target
            tokens, or that scalar loss tensor.
        batches: Dicts with ``input_ids`` and ``labels`` LongTensor[B, T]: ``grad_accum_steps``
            of them, fewer during a batch-size warmup (the same number on every rank).
        optimizer: Built by ``build_optimizer``.
        scheduler: Built by ``build_scheduler``.
        config: Supplies ``grad_clip``, ``precision``, ``nan_policy``.
        guard: Optional loss-spike guard.
        sync: Under ``nan_policy="stop"``: check finiteness now (before the update).

    Returns:
        ``loss`` and its parts (token-weighted means over micro-batches and ranks) and
        ``grad_norm`` as 0-dim float tensors on the model's device (``to_floats`` converts them);
        floats ``lr`` (used by this step), ``skipped`` (0/1), ``skipped_nan``, ``skipped_spike``.

    Raises:
        FloatingPointError: non-finite loss or gradient norm under ``nan_policy="stop"``, when
            checked (see above).
    """
    device = next(model.parameters()).device
    lr = group_lr(optimizer.param_groups[0])
    optimizer.zero_grad(set_to_none=True)
    parts = _accumulate(model, batches, device, config.precision)
    grad_norm = _clip(model, config.grad_clip, device)
    guarded = guard is not None and guard.k > 0
    nan = spike = False
    if guarded or config.nan_policy == "skip" or sync:
        loss, norm = torch.stack([parts["loss"], grad_norm]).tolist()  # the one host sync
        nan = not (math.isfinite(loss) and math.isfinite(norm))
        if nan and config.nan_policy == "stop":
            raise FloatingPointError(f"non-finite loss={loss} or grad_norm={norm}")
        spike = not nan and guarded and guard.is_spike(loss)
    if nan or spike:
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()
    else:
        optimizer.step()
        scheduler.step()
        if guarded:
            guard.accept(loss)
    return {
        **parts,
        "grad_norm": grad_norm,
        "lr": lr,
        "skipped": float(nan or spike),
        "skipped_nan": float(nan),
        "skipped_spike": float(spike),
    }


def finite(metrics: dict[str, torch.Tensor | float]) -> torch.Tensor:
    """Bool tensor (on the device, no sync): loss and gradient norm of a step are finite."""
    return torch.isfinite(torch.as_tensor(metrics["loss"])) & torch.isfinite(
        torch.as_tensor(metrics["grad_norm"])
    )


def to_floats(metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """``metrics`` with every tensor read to a float, in one host transfer."""
    keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return dict(metrics)
    values = torch.stack([metrics[k].float() for k in keys]).tolist()
    return metrics | dict(zip(keys, values, strict=True))


def _accumulate(
    model: nn.Module, batches: list[dict[str, torch.Tensor]], device: torch.device, precision: str
) -> dict[str, torch.Tensor]:
    """Forward + backward each micro-batch; returns the global token-weighted mean of each part.

    A micro-batch's loss is a mean over its target tokens, so it is weighted by its share of the
    global batch's target tokens (all micro-batches, all ranks): the gradient is then that of the
    sum over all target tokens divided by their count. The gradient reduction of the data-parallel
    model (FSDP2) averages over ranks, so the backward scale carries a factor ``world_size``.
    Other parts (z-loss, MoE auxiliary losses) are weighted the same way.
    """
    labels = [b["labels"].to(device, non_blocking=True) for b in batches]
    weights, world = _token_weights(labels)
    sums: dict[str, torch.Tensor] = {}
    n = len(batches)
    for i, (batch, target, w) in enumerate(zip(batches, labels, weights, strict=True)):
        if hasattr(model, "set_requires_gradient_sync"):
            # FSDP2: reduce-scatter gradients only on the last micro-batch.
            model.set_requires_gradient_sync(i == n - 1)
        input_ids = batch["input_ids"].to(device, non_blocking=True)
        with autocast(device, precision):
            out = model(input_ids, labels=target)
        out = out if isinstance(out, dict) else {"loss": out}
        # A micro-batch without target tokens has a 0/0 = NaN mean: it contributes nothing.
        (torch.where(w > 0, out["loss"], 0.0) * (w * world)).backward()
        for key, value in out.items():
            part = torch.where(w > 0, value.detach().float() * w, 0.0)
            sums[key] = sums[key] + part if key in sums else part
    keys = sorted(sums)
    stacked = torch.stack([sums[k] for k in keys])
    if world > 1:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)  # the weights sum to 1 over all ranks
    return dict(zip(keys, stacked.unbind(), strict=True))


def _token_weights(labels: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Each micro-batch's share of the global target tokens (one all_reduce), and world size."""
    counts = torch.stack([(y != IGNORE_INDEX).sum() for y in labels]).float()
    total = counts.sum()
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        world = dist.get_world_size()
    return counts / total.clamp(min=1), world


def _clip(model: nn.Module, grad_clip: float, device: torch.device) -> torch.Tensor:
    """Clip the global gradient norm; returns the norm before clipping (a tensor, no sync)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros((), device=device)
    max_norm = grad_clip if grad_clip > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP2: a collective, not a host sync
        norm = norm.full_tensor()
    return norm.float()
