"""Host memory that training frees goes back to the operating system (glibc's malloc).

glibc serves an allocation of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with its
own ``mmap`` and unmaps it on free. But each free of such a block raises the threshold to its
size (up to 32 MiB), after which blocks that size come from the heap, and the heap keeps what
is freed in the middle of it. Training frees and reallocates block-sized buffers on every step
(FSDP's all-gathered parameters, unsharded gradients, optimizer temporaries), so the resident
set grew by what was freed: with 4 gloo ranks and a 145M-parameter model, 1.7-2.0x the
model's fp32 bytes per rank against 1.1x with the threshold fixed (measured:
``benchmarks/memory/bench_host_memory.py``). Fixing the threshold keeps large tensors on
their own mappings.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["return_freed_memory_to_os"]

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
DEFAULT_THRESHOLD = 128 * 1024  # glibc's initial value, now fixed

log = logging.getLogger(__name__)


def return_freed_memory_to_os(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process (Linux with glibc;
    elsewhere, or when ``$MALLOC_MMAP_THRESHOLD_`` already sets it, nothing changes).

    Returns whether it was set. Call it before the model is allocated.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: its own allocator rules
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) failed: freed host memory may stay", threshold)
    return ok
