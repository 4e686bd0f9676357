"""Correctness against the float64 reference, then timing and peak memory, of one provider.

Error measure: for every output (and, for fwd+bwd, every input gradient)
``max |provider - reference| / max |reference|``, the largest over those tensors. bf16 keeps 8
bits of mantissa (relative rounding 2**-9), so an op that rounds once or twice stays far below
``TOL``; a wrong result (bad indexing, a missing term) lands far above it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks.kernels.kernel_cases import DTYPE, Case

TOL = 2e-2  # bf16 inputs and outputs, fp32 maths inside the kernels
CPU_REPS = 3  # timed calls on a CPU; their median is reported


@dataclass
class Reference:
    """Float64 outputs and input gradients of a case, for one set of upstream gradients."""

    outputs: list[torch.Tensor]
    grads: list[torch.Tensor | None]
    upstream: list[torch.Tensor]  # bf16-rounded, float64: the grads fed into every backward


def as_list(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


def _floating(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t for t in inputs if t.is_floating_point()]


def _leaves(inputs: list[torch.Tensor], dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Fresh copies (in-place providers must not change the case's inputs) with grads on."""
    out = []
    for t in inputs:
        t = t.detach().to(dtype) if dtype and t.is_floating_point() else t.detach().clone()
        out.append(t.requires_grad_(t.is_floating_point()))
    return out


def reference(case: Case) -> Reference:
    """Run ``case.reference`` in float64 on the case's inputs, forward and backward."""
    leaves = _leaves(case.inputs, torch.float64)
    with torch.enable_grad():
        outs = as_list(case.reference(*leaves))
    upstream = [torch.randn(o.shape, device=o.device).to(DTYPE).double() for o in outs]
    grads = torch.autograd.grad(outs, _floating(leaves), upstream, allow_unused=True)
    return Reference([o.detach() for o in outs], list(grads), upstream)


def rel_err(value: torch.Tensor | None, ref: torch.Tensor) -> float:
    """``max |value - ref| / max |ref|``; inf for a missing value or a shape mismatch."""
    if value is None or value.shape != ref.shape:
        return math.inf
    scale = ref.abs().max().item() or 1.0
    err = (value.detach().double() - ref).abs().max().item() / scale
    return math.inf if math.isnan(err) else err


def check(case: Case, name: str, ref: Reference) -> tuple[float, float]:
    """(forward error, forward + backward error) of provider ``name`` against ``ref``."""
    fn = case.providers[name]
    leaves = _leaves(case.inputs)
    with torch.enable_grad():
        outs = as_list(fn(*leaves))
    if len(outs) != len(ref.outputs):
        return math.inf, math.inf
    fwd = max(rel_err(o, r) for o, r in zip(outs, ref.outputs, strict=True))
    upstream = [u.to(o.dtype) for u, o in zip(ref.upstream, outs, strict=True)]
    grads = torch.autograd.grad(outs, _floating(leaves), upstream, allow_unused=True)
    skip = case.no_grad.get(name, ())
    floating = [i for i, t in enumerate(case.inputs) if t.is_floating_point()]
    errs = [rel_err(g, r) for i, g, r in zip(floating, grads, ref.grads, strict=True)
            if i not in skip and r is not None]  # fmt: skip
    return fwd, max([fwd, *errs])


def _median_ms(step: Callable, reset: Callable, reps: int) -> float:
    times = []
    for _ in range(reps):
        reset()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(fn: Callable, inputs: list[torch.Tensor], mode: str) -> tuple[float, float | None]:
    """(median ms, peak MiB above the inputs or None on CPU) of one fwd or fwd+bwd call.

    On CUDA one untimed call first compiles torch.compile graphs and Triton kernels. On a CPU
    there is none: ``check`` has already called every provider once, and the median of
    ``CPU_REPS`` calls absorbs a first slow one (the Triton interpreter is slow on every call).
    """
    cuda = inputs[0].is_cuda
    args = [t.detach().clone() for t in inputs]
    if mode == "fwd":

        def step():
            with torch.no_grad():
                fn(*args)
    else:
        args = [a.requires_grad_(a.is_floating_point()) for a in args]
        grads: list[torch.Tensor] = []

        def step():
            outs = [o for o in as_list(fn(*args)) if o.requires_grad]
            grads[:] = grads or [torch.randn_like(o) for o in outs]
            torch.autograd.backward(outs, grads)

    def reset():  # gradients must not accumulate (or be counted) from one call to the next
        for a in args:
            a.grad = None

    if not cuda:
        return _median_ms(step, reset, CPU_REPS), None
    from triton.testing import do_bench

    step()
    reset()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    grad_to_none = args if mode != "fwd" else None
    return do_bench(step, grad_to_none=grad_to_none, return_mode="median"), peak


def copy_gb_s(nbytes: float, device: torch.device) -> float:
    """GB/s of a plain ``dst.copy_(src)`` moving ``nbytes`` in total (half read, half written)."""
    src = torch.empty(int(nbytes // 2), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    if device.type == "cuda":
        from triton.testing import do_bench

        ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    else:
        ms = _median_ms(lambda: dst.copy_(src), lambda: None, CPU_REPS)
    return nbytes / ms / 1e6
