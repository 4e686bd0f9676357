"""Stopping on a signal without losing work: finish the step, checkpoint together, exit 128+N.

Slurm preemption and ``scancel`` send SIGTERM (and, with ``--signal=USR1@120``, SIGUSR1 two
minutes before the time limit), torchrun forwards SIGTERM/SIGINT to its workers, and Ctrl-C is
SIGINT. ``StopSignals`` turns each of them into a flag; the handler only records it, since
Python runs handlers between bytecodes and a step must not be cut in half. At the end of every
step the ranks agree on it (``agreed``: an all-reduce(max) over a gloo group of CPU tensors, so
no accelerator sync; a plain flag read on one process), so every rank stops after the same step,
saves the same checkpoint and raises ``TrainingStopped``, whose exit code is the shell's
convention for "killed by signal N" (128 + N). A second signal while stopping is logged and
ignored: under Slurm the ranks get the signal twice (from slurmstepd and from torchrun).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingStopped"]

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class TrainingStopped(SystemExit):
    """Training stopped on signal ``signum`` after ``step``, checkpointed at ``checkpoint``.

    A ``SystemExit`` with code 128 + ``signum``: uncaught, the process exits as a shell reports
    a process killed by that signal, and a supervisor sees it was stopped, not that it failed.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"stopped by {name} after step {self.step}; checkpoint {self.checkpoint}"


class StopSignals:
    """Record SIGTERM/SIGINT/SIGUSR1 while installed (a context manager, main thread only)."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.signum = 0  # the first signal received; 0 = none
        self._previous: dict[int, object] = {}
        self._group = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not the main thread: SIGTERM/SIGINT will not checkpoint before exiting")
            return self
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            self._group = dist.new_group(backend="gloo")  # CPU tensors: no device sync per step
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum:
            log.warning("%s received while stopping: ignored, the checkpoint is being saved", name)
            return
        self.signum = signum
        log.warning("%s received: finishing this step, then checkpointing and exiting", name)

    def agreed(self) -> int:
        """The signal any rank received (0 if none): the same on every rank (collective when
        distributed, so every rank calls it after the same step)."""
        if self._group is None:
            return self.signum
        flag = torch.tensor([self.signum], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return int(flag[0])
