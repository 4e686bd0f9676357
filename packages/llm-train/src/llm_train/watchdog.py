"""Hang watchdog and synchronised garbage collection for the training loop.

A hung collective (one rank died, a NCCL deadlock) blocks every rank forever without an error.
``StepWatchdog`` arms faulthandler's C-level timer before each step: if the step does not end
within the timeout, the Python stacks of all threads go to ``<dump_dir>/hang-rank<R>.txt`` and
the process exits with status 1, so a supervisor (``torchrun --max-restarts``) restarts the job
from its newest checkpoint. A SIGTERM once it has been armed (torchrun stopping the other ranks)
also dumps the stacks there before the process ends. The timer runs in its own thread, so it
fires even while the main thread waits inside a C call (a collective, a CUDA sync).

Python's automatic GC pauses one rank at a time, at different moments on each, and every other
rank waits at the next collective. ``SyncedGC`` turns it off and collects every ``every`` steps
on all ranks at once (the same step everywhere), timing the collection.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import signal
import time
from pathlib import Path
from typing import TextIO

from llm_formats.atomic import open_append

__all__ = ["StepWatchdog", "SyncedGC"]


class StepWatchdog:
    """Dump all stacks and exit(1) when one step takes longer than ``timeout_s`` (0 = off)."""

    def __init__(self, timeout_s: float, dump_dir: str | Path, rank: int = 0) -> None:
        self.timeout_s = timeout_s
        self.path = Path(dump_dir) / f"hang-rank{rank}.txt"
        self._file: TextIO | None = None
        self._created = False

    def arm(self, step: int) -> None:
        """Start (or restart) the timer for ``step``: it must end within the timeout."""
        if self.timeout_s <= 0:
            return
        if self._file is None:
            self._open()
        faulthandler.dump_traceback_later(self.timeout_s, repeat=False, file=self._file, exit=True)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = not self.path.exists()  # an earlier attempt's dump stays
        self._file = open_append(self.path)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        self._file.write(f"pid {os.getpid()}, step timeout {self.timeout_s:g} s, {started}\n")
        self._file.flush()
        # When a supervisor stops the job (torchrun sends SIGTERM to the other ranks after one
        # failed), every rank says where it was, not only the one whose timer fired.
        faulthandler.register(signal.SIGTERM, file=self._file, all_threads=True, chain=True)

    def disarm(self) -> None:
        """Stop the timer (before checkpoints, evaluation and at the end of training)."""
        if self._file is not None:
            faulthandler.cancel_dump_traceback_later()

    def close(self) -> None:
        """Stop watching; a file this process created and nothing was dumped to is removed."""
        self.disarm()
        if self._file is not None:
            faulthandler.unregister(signal.SIGTERM)
            self._file.close()
            self._file = None
            if self._created:  # still running here: neither the timer nor SIGTERM fired
                self.path.unlink()


class SyncedGC:
    """Automatic GC off; ``gc.collect()`` every ``every`` steps (0 = leave Python's GC alone)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._was_enabled = gc.isenabled()

    def __enter__(self) -> SyncedGC:
        if self.every > 0:
            gc.disable()
        return self

    def __exit__(self, *exc) -> None:
        if self.every > 0 and self._was_enabled:
            gc.enable()

    def maybe_collect(self, step: int) -> float | None:
        """Collect when ``step`` is due; returns the seconds it took, else None."""
        if self.every <= 0 or step % self.every:
            return None
        start = time.perf_counter()
        gc.collect()
        return time.perf_counter() - start
