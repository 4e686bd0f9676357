"""Loss-spike guard: flags a loss far above the recent running mean."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SpikeGuard"]


class SpikeGuard:
    """Flags a loss that exceeds the mean of recent accepted losses by ``k`` standard deviations.

    Only accepted (not skipped) losses enter the window, so one spike cannot raise the bar for the
    next. The guard is silent until the window is full. Stateful, so it is checkpointed.

    Args:
        k: Threshold in standard deviations; 0 disables the guard.
        window: Number of recent accepted losses kept.
    """

    def __init__(self, k: float, window: int) -> None:
        self.k = k
        self.window = window
        self.losses: deque[float] = deque(maxlen=window)

    def is_spike(self, loss: float) -> bool:
        """True if ``loss`` is a spike given the current window."""
        if self.k <= 0 or len(self.losses) < self.window:
            return False
        mean = sum(self.losses) / len(self.losses)
        std = math.sqrt(sum((x - mean) ** 2 for x in self.losses) / (len(self.losses) - 1))
        return loss > mean + self.k * std

    def accept(self, loss: float) -> None:
        """Add the loss of an applied update to the window."""
        self.losses.append(loss)

    def state_dict(self) -> dict:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state: dict) -> None:
        self.losses = deque(state["losses"], maxlen=self.window)
