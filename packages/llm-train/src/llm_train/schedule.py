"""Learning-rate schedules: a pure function of the step, wrapped in a LambdaLR for the optimizer.

Step ``s`` is the 0-based index of the optimizer step about to be taken; the last update of a run
is ``s = steps - 1``. Warmup is linear and reaches the peak at ``s = warmup_steps - 1`` (so step 0
already learns). The decay after it starts at the peak at ``s = warmup_steps`` and reaches the
floor ``min_lr`` at the last update, or, with a final anneal of ``n = anneal_steps`` updates, at
``s = steps - 1 - n``, from where the LR falls linearly to exactly 0 at ``s = steps - 1``. (Before
the anneal option the decay ended at ``s = steps``, one past the last update, so the last update
never used the floor.)
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from llm_train.config import TrainConfig

__all__ = ["build_scheduler", "decay_start", "group_lr", "lr_at", "set_lr"]


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Args:
        step: Index of the step about to be taken.
        config: Supplies ``lr``, ``min_lr``, ``warmup_steps``, ``steps``, ``schedule``,
            ``decay_fraction``, ``anneal_fraction``.

    Returns:
        The learning rate.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    last, anneal = config.steps - 1, config.anneal_steps
    floor_step = last - anneal  # where the schedule's own shape ends
    if anneal and step > floor_step:
        # Linear from the schedule's value at floor_step to 0 at the last update.
        start = _shape(floor_step, floor_step, config)
        return start * max(0, last - step) / anneal
    return _shape(step, floor_step, config)


def decay_start(config: TrainConfig) -> int:
    """The step the decay starts from (at the peak; ``wsd``: the stable phase's last step)."""
    floor_step = config.steps - 1 - config.anneal_steps
    if config.schedule == "wsd":
        return max(config.warmup_steps, floor_step - round(config.decay_fraction * config.steps))
    return config.warmup_steps


def _shape(step: int, floor_step: int, config: TrainConfig) -> float:
    """The schedule after warmup, reaching the floor at ``floor_step``."""
    peak, floor = config.lr, config.min_lr
    if config.schedule == "constant":
        return peak
    # The decay runs from the peak at decay_start to the floor at floor_step.
    progress = _progress(step, decay_start(config), floor_step)
    if config.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak - (peak - floor) * progress  # linear, and wsd's decay phase


def _progress(step: int, start: int, end: int) -> float:
    if end <= start:  # no room to decay (a run barely longer than its warmup): stay at the peak
        return 0.0 if step <= start else 1.0
    return min(1.0, max(0.0, (step - start) / (end - start)))


def set_lr(group: dict, lr: float) -> None:
    """Set a param group's LR in place; torchao's optimizers keep it as a tensor (filled)."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


def group_lr(group: dict) -> float:
    """A param group's LR as a float (a CPU tensor for torchao's optimizers: no device sync)."""
    lr = group["lr"]
    return float(lr) if isinstance(lr, torch.Tensor) else lr


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LambdaLR:
    """LambdaLR that sets every param group's lr to ``lr_at(step, config)``.

    The optimizer's groups must have been built with ``lr=config.lr`` (``build_optimizer`` does).
    Call ``scheduler.step()`` once after each ``optimizer.step()``.
    """
    scheduler = _Schedule(optimizer, lambda step: lr_at(step, config) / config.lr)
    scheduler.base_lrs = [group_lr({"lr": base}) for base in scheduler.base_lrs]
    return scheduler


class _Schedule(LambdaLR):
    """LambdaLR whose state is JSON (checkpoint manifests): torchao's optimizers keep each
    group's LR as a tensor, which LambdaLR copies into its state."""

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["_last_lr"] = [group_lr({"lr": lr}) for lr in state["_last_lr"]]
        return state
