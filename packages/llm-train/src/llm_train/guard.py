"""Loss-spike guard: flags a loss far above the recent running mean."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SpikeGuard"]


class SpikeGuard:
    """Flags a loss that exceeds the mean of recent accepted losses by ``k`` standard deviations.

    Only accepted, non-spike losses enter the window, so one spike cannot raise the bar for the
    next. The guard is silent until the window is full. Stateful, so it is checkpointed. Each
    spike is kept in ``event`` (loss and threshold) until ``pop_event``, so the trainer can act
    on it and record it.

    Args:
        k: Threshold in standard deviations; 0 disables the guard.
        window: Number of recent accepted losses kept.
        skip: Whether ``is_spike`` asks ``train_step`` to skip a spike's update; False only
            records it (``spike_policy="log"``).
    """

    def __init__(self, k: float, window: int, *, skip: bool = True) -> None:
        self.k = k
        self.window = window
        self.skip = skip
        self.losses: deque[float] = deque(maxlen=window)
        self.event: dict[str, float] | None = None

    def threshold(self) -> float | None:
        """Mean + k * std of the window; None while the guard is off or the window not full."""
        if self.k <= 0 or len(self.losses) < self.window:
            return None
        mean = sum(self.losses) / len(self.losses)
        std = math.sqrt(sum((x - mean) ** 2 for x in self.losses) / (len(self.losses) - 1))
        return mean + self.k * std

    def is_spike(self, loss: float) -> bool:
        """True if ``loss`` is a spike given the current window and its update is to be skipped."""
        self.event = None  # a spike belongs to the step that checked it
        threshold = self.threshold()
        if threshold is None or not loss > threshold:
            return False
        self.event = {"loss": loss, "threshold": threshold}
        return self.skip

    def accept(self, loss: float) -> None:
        """Add the loss of an applied update to the window (not a logged spike's)."""
        if self.event is None:
            self.losses.append(loss)

    def pop_event(self) -> dict[str, float] | None:
        """The spike found by the last ``is_spike`` (``loss``, ``threshold``), once; else None."""
        event, self.event = self.event, None
        return event

    def state_dict(self) -> dict:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state: dict) -> None:
        self.losses = deque(state["losses"], maxlen=self.window)
        self.event = None
