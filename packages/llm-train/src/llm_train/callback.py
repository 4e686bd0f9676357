"""The callback protocol: side concerns (in-loop eval, sampling) run by the trainer."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

__all__ = ["Callback"]


@runtime_checkable
class Callback(Protocol):
    """Called every ``every`` steps and after the last step; returns metrics to log.

    The trainer calls ``callback(step, model)`` with the number of steps taken so far and puts
    the model back in train mode afterwards, so a callback may call ``model.eval()`` freely.
    """

    every: int

    def __call__(self, step: int, model: nn.Module) -> dict[str, float]: ...
