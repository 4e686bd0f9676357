"""The micro-batch and activation-checkpointing search of ``bench_throughput.py``, without torch.

For one preset: double the micro-batch from 1 without activation checkpointing until the first
configuration that does not fit (or ``max_micro_batch``); then, only if something did not fit,
go on with activation checkpointing from twice the largest micro-batch that fitted (at a
micro-batch that fits without it, checkpointing only adds a forward, so those are not tried).
The fastest trial wins. "Does not fit" is either the memory rule saying so before the run (a
cap on a CPU, where nothing runs out of memory in a useful way) or the run raising out-of-memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["OutOfMemory", "SearchResult", "Trial", "search"]

AcMode = Literal["off", "on", "search"]


class OutOfMemory(Exception):
    """A trial did not fit (raised by the measure function, or decided by the memory rule)."""


@dataclass
class Trial:
    """One micro-batch / checkpointing setting: its throughput, or why it did not run."""

    micro_batch: int
    activation_checkpointing: bool
    tokens_per_s: float | None = None  # None: did not fit
    needed_bytes: int | None = None  # the memory rule's estimate
    reason: str = ""
    result: object = None  # what the measure function returned (the benchmark's row)


@dataclass
class SearchResult:
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial | None:
        ran = [t for t in self.trials if t.tokens_per_s is not None]
        return max(ran, key=lambda t: t.tokens_per_s) if ran else None


def search(
    measure: Callable[[int, bool], tuple[float, object]],
    needed: Callable[[int, bool], int],
    cap_bytes: int | None,
    *,
    max_micro_batch: int,
    ac: AcMode = "search",
) -> SearchResult:
    """Search micro-batch sizes (powers of two) and checkpointing for the highest tokens/s.

    Args:
        measure: ``(micro_batch, checkpointing) -> (tokens/s, row)``; raises ``OutOfMemory``.
        needed: ``(micro_batch, checkpointing) -> bytes`` the memory rule expects.
        cap_bytes: Trials whose ``needed`` exceeds this are not run (None: no cap).
        max_micro_batch: Largest micro-batch tried.
        ac: ``search`` (as above), or ``on`` / ``off`` for one fixed setting.
    """
    if max_micro_batch < 1:
        raise ValueError(f"max_micro_batch must be >= 1, got {max_micro_batch}")
    result = SearchResult()
    largest_fit, ran_out = _double(
        result, measure, needed, cap_bytes, 1, max_micro_batch, ac == "on"
    )
    if ac == "search" and ran_out:
        _double(result, measure, needed, cap_bytes, 2 * largest_fit or 1, max_micro_batch, True)
    return result


def _double(result, measure, needed, cap_bytes, start, max_mb, ac: bool) -> tuple[int, bool]:
    """Trials at start, 2 start, ... until one does not fit. Returns the largest micro-batch
    that fitted (0: none) and whether one did not fit."""
    largest, mb = 0, start
    while mb <= max_mb:
        need = needed(mb, ac)
        trial = Trial(mb, ac, needed_bytes=need)
        result.trials.append(trial)
        if cap_bytes is not None and need > cap_bytes:
            trial.reason = f"estimate {need / 2**30:.3g} GiB > cap {cap_bytes / 2**30:.3g} GiB"
            return largest, True
        try:
            trial.tokens_per_s, trial.result = measure(mb, ac)
        except OutOfMemory as e:
            trial.reason = f"out of memory: {e}"[:200]
            return largest, True
        largest, mb = mb, 2 * mb
    return largest, False
