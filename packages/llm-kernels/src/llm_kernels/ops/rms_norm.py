"""RMSNorm (optionally fused with the residual add): Triton forward and backward.

Maths, per row ``x`` of length N, with ``w' = offset + w``:

    rstd = 1 / sqrt(mean(x**2) + eps)      xhat = x * rstd      y = xhat * w'
    dx   = rstd * (dy * w' - xhat * mean(dy * w' * xhat))
    dw   = sum over rows of dy * xhat

The residual variant first forms ``s = x + residual`` (rounded to the input dtype, as unfused
code would), stores it for the next residual, and normalises ``s``; in backward the gradient
flowing into ``s`` from its second use is added to ``ds`` and ``dx = dresidual = ds``.

Layout: one row per program step with the whole row in registers (BLOCK = next power of two of
N, masked). The forward kernel uses one program per row. The backward kernel is persistent: G
programs each loop over rows ``pid, pid + G, ...`` and keep a float32 partial sum of ``dw`` in
registers, written to a ``(G, N)`` buffer that is summed afterwards; no atomics, so ``dw`` is
bitwise identical run to run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm_kernels.ops.launch import (
    acc_dtype,
    as_rows,
    outside_autocast,
    persistent_programs,
    row_config,
)

__all__ = ["rms_norm_residual_triton", "rms_norm_triton"]

# Backward programs per SM: more rows in flight hide memory latency; more partial dw rows to sum.
BWD_PROGRAMS_PER_SM = 2


@triton.jit
def _rms_norm_fwd_kernel(
    X, R, S, W, Y, RSTD,
    stride_x, stride_r, stride_s, stride_y,
    N, eps, offset,
    HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0)
        x = (x.to(ACC) + r.to(ACC)).to(S.dtype.element_ty)  # round like unfused code
        tl.store(S + row * stride_s + cols, x, mask=mask)
    x = x.to(ACC)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(ACC) + offset
    tl.store(Y + row * stride_y + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    DY, DS, X, W, RSTD, DX, DW_PARTIAL,
    stride_dy, stride_ds, stride_x, stride_dx,
    M, N, offset,
    HAS_DS: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    w = tl.load(W + cols, mask=mask, other=0.0).to(ACC) + offset
    dw = tl.zeros((BLOCK,), dtype=ACC)
    for row in range(pid, M, n_prog):
        row64 = tl.cast(row, tl.int64)
        x = tl.load(X + row64 * stride_x + cols, mask=mask, other=0.0).to(ACC)
        dy = tl.load(DY + row64 * stride_dy + cols, mask=mask, other=0.0).to(ACC)
        rstd = tl.load(RSTD + row64).to(ACC)
        xhat = x * rstd
        dyw = dy * w
        dx = rstd * (dyw - xhat * (tl.sum(dyw * xhat, axis=0) / N))
        if HAS_DS:
            dx += tl.load(DS + row64 * stride_ds + cols, mask=mask, other=0.0).to(ACC)
        tl.store(DX + row64 * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * xhat
    tl.store(DW_PARTIAL + pid * N + cols, dw, mask=mask)


def _forward(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float, offset: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    shape = x.shape
    x2 = as_rows(x)
    m, n = x2.shape
    if weight.shape != (n,):
        raise ValueError(f"weight has shape {tuple(weight.shape)}, expected ({n},)")
    block, warps = row_config(n)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    rstd = torch.empty((m,), dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                       device=x.device)  # fmt: skip
    if residual is None:
        r2 = s = x2
    else:
        r2 = as_rows(residual)
        s = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0:
        _rms_norm_fwd_kernel[(m,)](
            x2, r2, s, weight.contiguous(), y, rstd,
            x2.stride(0), r2.stride(0), s.stride(0), y.stride(0),
            n, eps, offset,
            HAS_RESIDUAL=residual is not None, BLOCK=block, ACC=acc_dtype(x), num_warps=warps,
        )  # fmt: skip
    return y.view(shape), s.reshape(shape), rstd


def _backward(
    dy: torch.Tensor,
    ds: torch.Tensor | None,
    s: torch.Tensor,
    weight: torch.Tensor,
    rstd: torch.Tensor,
    offset: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = s.shape
    dy2, s2 = as_rows(dy), as_rows(s)
    ds2 = as_rows(ds) if ds is not None else dy2
    m, n = s2.shape
    block, warps = row_config(n)
    dx = torch.empty((m, n), dtype=s.dtype, device=s.device)
    g = persistent_programs(s.device, m, per_sm=BWD_PROGRAMS_PER_SM)
    partial = torch.empty((g, n), dtype=rstd.dtype, device=s.device)
    if m > 0:
        _rms_norm_bwd_kernel[(g,)](
            dy2, ds2, s2, weight.contiguous(), rstd, dx, partial,
            dy2.stride(0), ds2.stride(0), s2.stride(0), dx.stride(0),
            m, n, offset,
            HAS_DS=ds is not None, BLOCK=block, ACC=acc_dtype(s), num_warps=warps,
        )  # fmt: skip
    else:
        partial.zero_()
    dw = partial.sum(0).to(weight.dtype)
    return dx.view(shape), dw


# --- custom ops: opaque to torch.compile (no graph break), autograd registered below ---------


@torch.library.custom_op("llm_kernels::rms_norm_fwd", mutates_args=())
def _rms_norm_fwd_op(
    x: torch.Tensor, weight: torch.Tensor, eps: float, offset: float
) -> tuple[torch.Tensor, torch.Tensor]:
    y, _, rstd = _forward(x, None, weight, eps, offset)
    return y, rstd


@torch.library.custom_op("llm_kernels::rms_norm_residual_fwd", mutates_args=())
def _rms_norm_residual_fwd_op(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, offset: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward(x, residual, weight, eps, offset)


@torch.library.custom_op("llm_kernels::rms_norm_bwd", mutates_args=())
def _rms_norm_bwd_op(
    dy: torch.Tensor,
    ds: torch.Tensor | None,
    s: torch.Tensor,
    weight: torch.Tensor,
    rstd: torch.Tensor,
    offset: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _backward(dy, ds, s, weight, rstd, offset)


def _rstd_like(x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return x.new_empty((rows,), dtype=dtype)


@_rms_norm_fwd_op.register_fake
def _(x, weight, eps, offset):
    return torch.empty_like(x, memory_format=torch.contiguous_format), _rstd_like(x)


@_rms_norm_residual_fwd_op.register_fake
def _(x, residual, weight, eps, offset):
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    return y, torch.empty_like(y), _rstd_like(x)


@_rms_norm_bwd_op.register_fake
def _(dy, ds, s, weight, rstd, offset):
    return torch.empty_like(s, memory_format=torch.contiguous_format), torch.empty_like(weight)


def _setup(ctx, inputs, output):
    x, weight, _, offset = inputs
    ctx.save_for_backward(x, weight, output[1])
    ctx.offset = offset


def _bwd(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = _rms_norm_bwd_op(dy, None, x, weight, rstd, ctx.offset)
    return dx, dw, None, None


def _setup_residual(ctx, inputs, output):
    _, _, weight, _, offset = inputs
    ctx.save_for_backward(output[1], weight, output[2])
    ctx.offset = offset


def _bwd_residual(ctx, dy, ds, _drstd):
    s, weight, rstd = ctx.saved_tensors
    dx, dw = _rms_norm_bwd_op(dy, ds, s, weight, rstd, ctx.offset)
    return dx, dx, dw, None, None


_rms_norm_fwd_op.register_autograd(_bwd, setup_context=_setup)
_rms_norm_residual_fwd_op.register_autograd(_bwd_residual, setup_context=_setup_residual)


@outside_autocast
def rms_norm_triton(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, offset: float = 0.0
) -> torch.Tensor:
    """Triton RMSNorm; same contract as :func:`llm_kernels.reference.rms_norm`."""
    return _rms_norm_fwd_op(x, weight, float(eps), float(offset))[0]


@outside_autocast
def rms_norm_residual_triton(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-6,
    offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton residual-add + RMSNorm; same contract as the reference ``rms_norm_residual``."""
    y, s, _ = _rms_norm_residual_fwd_op(x, residual, weight, float(eps), float(offset))
    return y, s
