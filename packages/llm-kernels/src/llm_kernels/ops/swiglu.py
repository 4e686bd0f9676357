"""SwiGLU ``silu(gate) * up``: Triton forward and backward, two inputs or one fused [gate | up].

Maths, elementwise with ``sig = sigmoid(g)``:

    out   = g * sig * u
    dg    = dout * u * sig * (1 + g * (1 - sig))
    du    = dout * g * sig

Backward recomputes ``sig`` from the saved inputs instead of storing activations. The fused
variant reads ``gate`` and ``up`` as the two halves of each row of ``gate_up`` (row stride 2F)
and writes both gradients into one ``(…, 2F)`` buffer, so the projection needs no split copy.

Layout: a 2-D grid of (row, column block); BLOCK contiguous elements per program so loads and
stores vectorise (16 bytes per thread for bf16 with 4 warps and BLOCK=1024).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm_kernels.ops.launch import acc_dtype, as_rows, outside_autocast

__all__ = ["swiglu_fused_triton", "swiglu_triton"]

_BLOCK = 1024
_WARPS = 4


@triton.jit
def _swiglu_fwd_kernel(
    G, U, OUT, stride_g, stride_u, stride_o, N, BLOCK: tl.constexpr, ACC: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(ACC)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(ACC)
    out = g * tl.sigmoid(g) * u
    tl.store(OUT + row * stride_o + cols, out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(
    DO, G, U, DG, DU,
    stride_do, stride_g, stride_u, stride_dg, stride_du,
    N, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    do = tl.load(DO + row * stride_do + cols, mask=mask, other=0.0).to(ACC)
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(ACC)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(ACC)
    sig = tl.sigmoid(g)
    silu = g * sig
    dg = do * u * sig * (1.0 + g * (1.0 - sig))
    tl.store(DG + row * stride_dg + cols, dg.to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + row * stride_du + cols, (do * silu).to(DU.dtype.element_ty), mask=mask)


def _grid(m: int, n: int) -> tuple[int, int]:
    return (m, triton.cdiv(n, _BLOCK))


def _launch_fwd(g2: torch.Tensor, u2: torch.Tensor, out: torch.Tensor) -> None:
    m, n = g2.shape
    if m * n == 0:
        return
    _swiglu_fwd_kernel[_grid(m, n)](
        g2, u2, out, g2.stride(0), u2.stride(0), out.stride(0), n,
        BLOCK=_BLOCK, ACC=acc_dtype(g2), num_warps=_WARPS,
    )  # fmt: skip


def _launch_bwd(do2, g2, u2, dg2, du2) -> None:
    m, n = g2.shape
    if m * n == 0:
        return
    _swiglu_bwd_kernel[_grid(m, n)](
        do2, g2, u2, dg2, du2,
        do2.stride(0), g2.stride(0), u2.stride(0), dg2.stride(0), du2.stride(0),
        n, BLOCK=_BLOCK, ACC=acc_dtype(g2), num_warps=_WARPS,
    )  # fmt: skip


def _check_same(gate: torch.Tensor, up: torch.Tensor) -> None:
    if gate.shape != up.shape or gate.dtype != up.dtype:
        raise ValueError(
            f"gate {tuple(gate.shape)} {gate.dtype} and up {tuple(up.shape)} {up.dtype} "
            "must have the same shape and dtype"
        )


@torch.library.custom_op("llm_kernels::swiglu_fwd", mutates_args=())
def _swiglu_fwd_op(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    _check_same(gate, up)
    g2, u2 = as_rows(gate), as_rows(up)
    out = torch.empty(g2.shape, dtype=gate.dtype, device=gate.device)
    _launch_fwd(g2, u2, out)
    return out.view(gate.shape)


@torch.library.custom_op("llm_kernels::swiglu_bwd", mutates_args=())
def _swiglu_bwd_op(
    dout: torch.Tensor, gate: torch.Tensor, up: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    g2, u2, do2 = as_rows(gate), as_rows(up), as_rows(dout)
    dg = torch.empty(g2.shape, dtype=gate.dtype, device=gate.device)
    du = torch.empty_like(dg)
    _launch_bwd(do2, g2, u2, dg, du)
    return dg.view(gate.shape), du.view(gate.shape)


@torch.library.custom_op("llm_kernels::swiglu_fused_fwd", mutates_args=())
def _swiglu_fused_fwd_op(gate_up: torch.Tensor) -> torch.Tensor:
    gu2 = as_rows(gate_up)
    f = gu2.shape[1] // 2
    out = torch.empty((gu2.shape[0], f), dtype=gate_up.dtype, device=gate_up.device)
    _launch_fwd(gu2[:, :f], gu2[:, f:], out)
    return out.view(*gate_up.shape[:-1], f)


@torch.library.custom_op("llm_kernels::swiglu_fused_bwd", mutates_args=())
def _swiglu_fused_bwd_op(dout: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
    gu2, do2 = as_rows(gate_up), as_rows(dout)
    f = gu2.shape[1] // 2
    dgu = torch.empty(gu2.shape, dtype=gate_up.dtype, device=gate_up.device)
    _launch_bwd(do2, gu2[:, :f], gu2[:, f:], dgu[:, :f], dgu[:, f:])
    return dgu.view(gate_up.shape)


@_swiglu_fwd_op.register_fake
def _(gate, up):
    _check_same(gate, up)
    return torch.empty_like(gate, memory_format=torch.contiguous_format)


@_swiglu_bwd_op.register_fake
def _(dout, gate, up):
    dg = torch.empty_like(gate, memory_format=torch.contiguous_format)
    return dg, torch.empty_like(dg)


@_swiglu_fused_fwd_op.register_fake
def _(gate_up):
    return gate_up.new_empty((*gate_up.shape[:-1], gate_up.shape[-1] // 2))


@_swiglu_fused_bwd_op.register_fake
def _(dout, gate_up):
    return torch.empty_like(gate_up, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _bwd(ctx, dout):
    gate, up = ctx.saved_tensors
    return _swiglu_bwd_op(dout, gate, up)


def _bwd_fused(ctx, dout):
    (gate_up,) = ctx.saved_tensors
    return _swiglu_fused_bwd_op(dout, gate_up)


_swiglu_fwd_op.register_autograd(_bwd, setup_context=_setup)
_swiglu_fused_fwd_op.register_autograd(_bwd_fused, setup_context=_setup)


@outside_autocast
def swiglu_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Triton ``silu(gate) * up``; same contract as :func:`llm_kernels.reference.swiglu`."""
    return _swiglu_fwd_op(gate, up)


@outside_autocast
def swiglu_fused_triton(gate_up: torch.Tensor) -> torch.Tensor:
    """Triton SwiGLU on ``[gate | up]``; same contract as the reference ``swiglu_fused``."""
    if gate_up.shape[-1] % 2:
        raise ValueError(f"gate_up last dim must be even, got {gate_up.shape[-1]}")
    return _swiglu_fused_fwd_op(gate_up)
