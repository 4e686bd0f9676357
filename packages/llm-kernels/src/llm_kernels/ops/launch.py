"""Launch heuristics shared by the kernels: block sizes, warps, grid sizes, dtypes.

Launch configurations are a pure function of the shape (and device), cached with ``lru_cache``:
the memory-bound kernels here gain little from autotuning and autotuning would make the first
call of every new shape slow inside a training step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import triton
import triton.language as tl

# One row of RMSNorm lives in registers; beyond this many elements it would spill.
MAX_ROW_BLOCK = 65536


def acc_dtype(x: torch.Tensor) -> tl.dtype:
    """Accumulation dtype for a kernel reading ``x``: float64 for float64, else float32."""
    return tl.float64 if x.dtype == torch.float64 else tl.float32


@functools.lru_cache(maxsize=256)
def row_config(n: int) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for a kernel that keeps one row of ``n`` elements in registers."""
    block = triton.next_power_of_2(n)
    if block > MAX_ROW_BLOCK:
        raise ValueError(f"row length {n} exceeds the supported maximum {MAX_ROW_BLOCK}")
    if block >= 32768:
        warps = 32
    elif block >= 8192:
        warps = 16
    elif block >= 2048:
        warps = 8
    else:
        warps = 4
    return block, warps


@functools.lru_cache(maxsize=16)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def persistent_programs(device: torch.device, rows: int, per_sm: int = 2) -> int:
    """Grid size for a persistent kernel that loops over ``rows`` (at least 1).

    On CUDA: ``per_sm`` programs per streaming multiprocessor. Elsewhere (the CPU interpreter):
    4 programs, enough to exercise the multi-program reduction paths in tests.
    """
    if device.type == "cuda":
        n = _sm_count(device.index if device.index is not None else torch.cuda.current_device())
        return max(1, min(rows, per_sm * n))
    return max(1, min(rows, 4))


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """View ``x`` as ``(rows, last_dim)`` with a unit last-dim stride (copying only if needed)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    return x.reshape(-1, x.shape[-1])


def outside_autocast(fn: Callable) -> Callable:
    """Run ``fn`` with autocast off for its first argument's device.

    The kernels pick their own dtypes (outputs in the input dtype, float32 accumulation); torch
    ops inside them (buffers, reductions, matmuls) must not be recast by an enclosing autocast.
    """

    @functools.wraps(fn)
    def wrapper(x: torch.Tensor, *args, **kwargs):
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return fn(x, *args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(x, *args, **kwargs)

    return wrapper
