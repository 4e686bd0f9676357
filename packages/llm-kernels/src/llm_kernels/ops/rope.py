"""Rotary position embedding on q and k in one kernel: Triton forward and backward.

Maths, for each rotated pair ``(x1, x2)`` at position t and frequency i:

    out1 = x1 * cos[t, i] - x2 * sin[t, i]
    out2 = x2 * cos[t, i] + x1 * sin[t, i]

Pairs are ``(i, i + R/2)`` in the half-split layout (GPT-NeoX, Hugging Face Llama) and
``(2i, 2i + 1)`` in the interleaved layout (Meta Llama). Only the first ``R = 2 * cos.shape[-1]``
dims rotate (partial rotary); the remaining ``D - R`` are copied. The rotation is orthogonal, so
backward is the same kernel with ``sin`` negated (``INVERSE``); no activation is stored.

Layout: a 1-D grid, one program per (batch, position) handles every head of q and then of k as a
``(HEADS_BLOCK, HALF_BLOCK)`` tile, loading the cos/sin row once for both.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm_kernels.ops.launch import acc_dtype, outside_autocast

__all__ = ["apply_rope_triton"]


@triton.jit
def _rope_heads(
    X, OUT, sxb, sxt, sxh, b, t, T, n_heads, D,
    c, s, half_offs, half_mask, INTERLEAVED: tl.constexpr,
    HALF: tl.constexpr, HEADS_BLOCK: tl.constexpr, PASS_BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    # OUT is contiguous (B, T, H, D); X has arbitrary strides except a unit last-dim stride.
    heads = tl.arange(0, HEADS_BLOCK)[:, None]
    hmask = heads < n_heads
    x_row = X + b * sxb + t * sxt + heads * sxh
    o_row = OUT + ((b * T + t) * n_heads + heads) * D
    if INTERLEAVED:
        i1 = 2 * half_offs[None, :]
        i2 = i1 + 1
    else:
        i1 = half_offs[None, :]
        i2 = i1 + HALF
    m = hmask & half_mask[None, :]
    x1 = tl.load(x_row + i1, mask=m, other=0.0).to(ACC)
    x2 = tl.load(x_row + i2, mask=m, other=0.0).to(ACC)
    tl.store(o_row + i1, (x1 * c - x2 * s).to(OUT.dtype.element_ty), mask=m)
    tl.store(o_row + i2, (x2 * c + x1 * s).to(OUT.dtype.element_ty), mask=m)
    if PASS_BLOCK > 0:  # partial rotary: copy dims [2 * HALF, D)
        p = 2 * HALF + tl.arange(0, PASS_BLOCK)[None, :]
        pm = hmask & (p < D)
        tl.store(o_row + p, tl.load(x_row + p, mask=pm, other=0.0), mask=pm)


@triton.jit
def _rope_kernel(
    Q, K, COS, SIN, QO, KO,
    sqb, sqt, sqh, skb, skt, skh, sct, sst,
    T, HQ, HK, D,
    INTERLEAVED: tl.constexpr, INVERSE: tl.constexpr, HALF: tl.constexpr,
    HALF_BLOCK: tl.constexpr, HQ_BLOCK: tl.constexpr, HK_BLOCK: tl.constexpr,
    PASS_BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    b = pid // T
    t = pid % T
    half_offs = tl.arange(0, HALF_BLOCK)
    half_mask = half_offs < HALF
    c = tl.load(COS + t * sct + half_offs, mask=half_mask, other=0.0).to(ACC)[None, :]
    s = tl.load(SIN + t * sst + half_offs, mask=half_mask, other=0.0).to(ACC)[None, :]
    if INVERSE:
        s = -s
    _rope_heads(Q, QO, sqb, sqt, sqh, b, t, T, HQ, D, c, s, half_offs, half_mask,
                INTERLEAVED, HALF, HQ_BLOCK, PASS_BLOCK, ACC)  # fmt: skip
    _rope_heads(K, KO, skb, skt, skh, b, t, T, HK, D, c, s, half_offs, half_mask,
                INTERLEAVED, HALF, HK_BLOCK, PASS_BLOCK, ACC)  # fmt: skip


def _check(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"q and k must be (B, T, H, D); got {tuple(q.shape)} and {tuple(k.shape)}")
    b, t, _, d = q.shape
    if k.shape[0] != b or k.shape[1] != t or k.shape[3] != d:
        raise ValueError(f"k {tuple(k.shape)} does not match q {tuple(q.shape)} in B, T or D")
    if cos.shape != sin.shape or cos.dim() != 2 or cos.shape[0] != t or 2 * cos.shape[1] > d:
        raise ValueError(
            f"cos {tuple(cos.shape)} and sin {tuple(sin.shape)} must both be (T={t}, R/2) "
            f"with R <= D={d}"
        )


def _rope(q, k, cos, sin, interleaved: bool, inverse: bool):
    _check(q, k, cos, sin)
    q = q if q.stride(-1) == 1 else q.contiguous()
    k = k if k.stride(-1) == 1 else k.contiguous()
    cos = cos if cos.stride(-1) == 1 else cos.contiguous()
    sin = sin if sin.stride(-1) == 1 else sin.contiguous()
    qo = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    ko = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    b, t, hq, d = q.shape
    hk = k.shape[2]
    half = cos.shape[1]
    pass_block = triton.next_power_of_2(d - 2 * half) if d > 2 * half else 0
    tile = triton.next_power_of_2(max(hq, 1)) * triton.next_power_of_2(max(half, 1))
    if b * t == 0:
        return qo, ko
    _rope_kernel[(b * t,)](
        q, k, cos, sin, qo, ko,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        cos.stride(0), sin.stride(0),
        t, hq, hk, d,
        INTERLEAVED=interleaved, INVERSE=inverse, HALF=half,
        HALF_BLOCK=triton.next_power_of_2(max(half, 1)),
        HQ_BLOCK=triton.next_power_of_2(max(hq, 1)), HK_BLOCK=triton.next_power_of_2(max(hk, 1)),
        PASS_BLOCK=pass_block, ACC=acc_dtype(q), num_warps=8 if tile >= 2048 else 4,
    )  # fmt: skip
    return qo, ko


@torch.library.custom_op("llm_kernels::rope", mutates_args=())
def _rope_op(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    interleaved: bool,
    inverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _rope(q, k, cos, sin, interleaved, inverse)


@_rope_op.register_fake
def _(q, k, cos, sin, interleaved, inverse):
    _check(q, k, cos, sin)
    return (
        torch.empty_like(q, memory_format=torch.contiguous_format),
        torch.empty_like(k, memory_format=torch.contiguous_format),
    )


def _setup(ctx, inputs, output):
    _, _, cos, sin, interleaved, inverse = inputs
    ctx.save_for_backward(cos, sin)
    ctx.interleaved, ctx.inverse = interleaved, inverse


def _bwd(ctx, dq, dk):
    # The rotation is orthogonal: its transpose is the inverse rotation. cos/sin get no grad.
    cos, sin = ctx.saved_tensors
    dq, dk = _rope_op(dq, dk, cos, sin, ctx.interleaved, not ctx.inverse)
    return dq, dk, None, None, None, None


_rope_op.register_autograd(_bwd, setup_context=_setup)


@outside_autocast
def apply_rope_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    interleaved: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton RoPE on q and k; same contract as :func:`llm_kernels.reference.apply_rope`.

    ``cos`` and ``sin`` receive no gradient (they are position tables, not parameters).
    """
    return _rope_op(q, k, cos, sin, bool(interleaved), False)
