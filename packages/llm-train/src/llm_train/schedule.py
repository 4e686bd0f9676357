"""Learning-rate schedules: a pure function of the step, wrapped in a LambdaLR for the optimizer.

Step ``s`` is the 0-based index of the optimizer step about to be taken. Warmup is linear and
reaches the peak at ``s = warmup_steps - 1`` (so step 0 already learns); after it the schedule
moves over ``[warmup_steps, steps]`` and reaches ``min_lr`` at ``s = steps``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from llm_train.config import TrainConfig

__all__ = ["build_scheduler", "lr_at"]


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Args:
        step: Index of the step about to be taken.
        config: Supplies ``lr``, ``min_lr``, ``warmup_steps``, ``steps``, ``schedule``.

    Returns:
        The learning rate.
    """
    peak, floor = config.lr, config.min_lr
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return peak
    if config.schedule == "wsd":
        # Warmup-stable-decay: hold the peak, then decay linearly over the last decay_fraction.
        decay_start = max(
            config.warmup_steps, config.steps - round(config.decay_fraction * config.steps)
        )
        progress = _progress(step, decay_start, config.steps)
        return peak - (peak - floor) * progress
    progress = _progress(step, config.warmup_steps, config.steps)
    if config.schedule == "linear":
        return peak - (peak - floor) * progress
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _progress(step: int, start: int, end: int) -> float:
    if end <= start:
        return 1.0
    return min(1.0, max(0.0, (step - start) / (end - start)))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LambdaLR:
    """LambdaLR that sets every param group's lr to ``lr_at(step, config)``.

    The optimizer's groups must have been built with ``lr=config.lr`` (``build_optimizer`` does).
    Call ``scheduler.step()`` once after each ``optimizer.step()``.
    """
    return LambdaLR(optimizer, lambda step: lr_at(step, config) / config.lr)
