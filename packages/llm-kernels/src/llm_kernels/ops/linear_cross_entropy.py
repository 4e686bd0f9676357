"""Fused linear + cross-entropy: the logits are computed chunk by chunk and never materialised.

For a chunk of C tokens (hidden rows ``h``), with ``x = h @ W.T`` (C, V) in float32:

    lse_i  = logsumexp_j x_ij
    ce_i   = lse_i - (1 - eps) * x_{i, y_i} - eps * mean_j x_ij          (label smoothing eps)
    loss   = sum_i valid_i * (ce_i + z * lse_i**2) / n_valid
    dx_ij  = softmax_ij * (1 + 2 z lse_i) - (1 - eps) [j == y_i] - eps / V   (0 for ignored rows)

A Triton kernel (one program per row, two passes over V in BLOCK-wide tiles: online max/sum,
then gradient) turns each logits chunk into ``dx`` in place. The gradients are formed during the
forward pass and kept until backward, which only rescales them:

    grad_hidden[chunk] = dx @ W                 grad_W += dx.T @ h   (float32 accumulator)

The 1/n_valid factor and the incoming gradient are applied in backward as tensor ops, so the
forward needs no host synchronisation. Peak extra memory: the float32 ``grad_W`` (V, d), the
chunk's logits (C, V) and the 16-bit ``dx`` (C, V) instead of several (N, V) tensors.
"""

from __future__ import annotations

import warnings

import torch
import triton
import triton.language as tl

from llm_kernels.ops.launch import acc_dtype

__all__ = ["fused_linear_cross_entropy_triton"]

# Elements of one logits chunk (C * V): 2**28 float32 = 1 GiB. Each chunk is one pass of the
# float32 grad_W through memory: on an H100 at V=128k, d=4096, 16k tokens, 2048-row chunks took
# 89.6 ms against 126.8 ms for 523-row ones, at the same peak memory (sweep_linear_ce.py).
_CHUNK_ELEMENTS = 1 << 28
# Rows of W per float32 accumulate step (bounds the temporary of a 16-bit -> float32 matmul).
_WEIGHT_SLICE = 16384
_ADDMM_OUT_DTYPE = True  # torch.addmm(..., out_dtype=float32) on 16-bit CUDA inputs (torch >= 2.8)


@triton.jit
def _ce_kernel(
    LOGITS, DLOGITS, LABELS, LOSS, LSE,
    stride_l, stride_d, V, ignore_index, smoothing, z_coef,
    COMPUTE_GRAD: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(LABELS + row).to(tl.int64)
    valid = label != ignore_index
    x_row = LOGITS + row * stride_l
    cols = tl.arange(0, BLOCK)
    m = tl.full([], float("-inf"), ACC)
    d = tl.zeros([], ACC)
    sum_x = tl.zeros([], ACC)
    for start in range(0, V, BLOCK):  # pass 1: online logsumexp and sum of logits
        offs = start + cols
        x = tl.load(x_row + offs, mask=offs < V, other=float("-inf")).to(ACC)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        sum_x += tl.sum(tl.where(offs < V, x, 0.0), axis=0)
        m = m_new
    lse = m + tl.log(d)
    safe = tl.minimum(tl.maximum(label, 0), V - 1)
    x_y = tl.load(x_row + safe).to(ACC)
    loss = lse - (1.0 - smoothing) * x_y - smoothing * sum_x / V + z_coef * lse * lse
    tl.store(LOSS + row, tl.where(valid, loss, 0.0))
    tl.store(LSE + row, tl.where(valid, lse, 0.0))
    if COMPUTE_GRAD:  # pass 2: dlogits (unscaled: 1/n_valid is applied in backward)
        keep = tl.where(valid, 1.0, 0.0)
        d_row = DLOGITS + row * stride_d
        for start in range(0, V, BLOCK):
            offs = start + cols
            x = tl.load(x_row + offs, mask=offs < V, other=0.0).to(ACC)
            g = tl.exp(x - lse) * (1.0 + 2.0 * z_coef * lse) - smoothing / V
            g -= tl.where(offs == label, 1.0 - smoothing, 0.0)
            tl.store(d_row + offs, (g * keep).to(DLOGITS.dtype.element_ty), mask=offs < V)


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _mm_acc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with a float32 result (float64 for float64 inputs), 16-bit tensor cores on CUDA."""
    acc = _acc_dtype(a)
    if a.is_cuda and a.dtype in (torch.bfloat16, torch.float16):
        return torch.mm(a, b, out_dtype=acc)
    return torch.mm(a.to(acc), b.to(acc))


def _accumulate_grad_weight(gw: torch.Tensor, dx: torch.Tensor, h: torch.Tensor) -> None:
    """``gw += dx.T @ h`` in gw's dtype (float32), 16-bit tensor cores on CUDA."""
    if not (dx.is_cuda and dx.dtype in (torch.bfloat16, torch.float16)):
        gw.addmm_(dx.T.to(gw.dtype), h.to(gw.dtype))
        return
    global _ADDMM_OUT_DTYPE
    if _ADDMM_OUT_DTYPE:
        # cuBLAS accumulates into the float32 gw (beta=1): no (V, d) temporary, one pass over gw.
        try:
            torch.addmm(gw, dx.T, h, out_dtype=gw.dtype, out=gw)
            return
        except (RuntimeError, TypeError) as e:  # a torch without addmm(out_dtype=)
            _ADDMM_OUT_DTYPE = False
            warnings.warn(f"addmm with out_dtype failed ({e}); using float32 slices", stacklevel=2)
    for v0 in range(0, gw.shape[0], _WEIGHT_SLICE):
        v1 = min(v0 + _WEIGHT_SLICE, gw.shape[0])
        gw[v0:v1] += _mm_acc(dx[:, v0:v1].T, h)


def _chunk_rows(n: int, v: int) -> int:
    rows = _CHUNK_ELEMENTS // max(v, 1)
    rows = rows // 256 * 256 or rows  # whole tensor-core tiles where the chunk allows it
    return max(1, min(n, rows))


def _check(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} must be (N, d) and weight {tuple(weight.shape)} (V, d)"
        )
    if labels.shape != (hidden.shape[0],):
        raise ValueError(f"labels {tuple(labels.shape)} must be ({hidden.shape[0]},)")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden dtype {hidden.dtype} differs from weight dtype {weight.dtype}")


def _forward(hidden, weight, labels, ignore_index, smoothing, z_coef, compute_grad, chunk_size):
    n, dim = hidden.shape
    v = weight.shape[0]
    acc = _acc_dtype(hidden)
    dev = hidden.device
    loss_rows = torch.zeros(n, dtype=acc, device=dev)
    lse_rows = torch.zeros(n, dtype=acc, device=dev)
    gh = torch.empty_like(hidden) if compute_grad else hidden.new_empty(0)
    gw = torch.zeros((v, dim), dtype=acc, device=dev) if compute_grad else hidden.new_empty(0)
    chunk = chunk_size if chunk_size > 0 else _chunk_rows(n, v)
    block = min(triton.next_power_of_2(v), 4096 if hidden.is_cuda else 128)
    for s in range(0, n, chunk):
        h = hidden[s : s + chunk]
        logits = _mm_acc(h, weight.T)  # (C, V) float32
        dx = logits if hidden.dtype == acc else torch.empty_like(logits, dtype=hidden.dtype)
        _ce_kernel[(h.shape[0],)](
            logits, dx, labels[s : s + chunk], loss_rows[s : s + chunk], lse_rows[s : s + chunk],
            logits.stride(0), dx.stride(0), v, ignore_index, smoothing, z_coef,
            COMPUTE_GRAD=compute_grad, BLOCK=block, ACC=acc_dtype(logits),
            num_warps=8 if block >= 2048 else 4,
        )  # fmt: skip
        del logits
        if compute_grad:
            torch.mm(dx, weight, out=gh[s : s + chunk])
            _accumulate_grad_weight(gw, dx, h)
    inv_n = 1.0 / (labels != ignore_index).sum().clamp(min=1).to(acc)
    z = lse_rows.pow(2).sum() * inv_n
    return loss_rows.sum() * inv_n, z, gh, gw, inv_n


@torch.library.custom_op("llm_kernels::fused_linear_cross_entropy", mutates_args=())
def _flce_op(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    label_smoothing: float,
    z_loss: float,
    compute_grad: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    _check(hidden, weight, labels)
    hidden, weight, labels = hidden.contiguous(), weight.contiguous(), labels.contiguous()
    return _forward(
        hidden, weight, labels, ignore_index, label_smoothing, z_loss, compute_grad, chunk_size
    )


@_flce_op.register_fake
def _(hidden, weight, labels, ignore_index, label_smoothing, z_loss, compute_grad, chunk_size):
    _check(hidden, weight, labels)
    acc = _acc_dtype(hidden)
    scalar = hidden.new_empty((), dtype=acc)
    if compute_grad:
        gh, gw = torch.empty_like(hidden), weight.new_empty(weight.shape, dtype=acc)
    else:
        gh, gw = hidden.new_empty(0), hidden.new_empty(0)
    return scalar, torch.empty_like(scalar), gh, gw, torch.empty_like(scalar)


def _setup(ctx, inputs, output):
    _, weight, _, _, _, _, compute_grad, _ = inputs
    _, _, gh, gw, inv_n = output
    ctx.compute_grad = compute_grad
    ctx.weight_dtype = weight.dtype
    ctx.save_for_backward(gh, gw, inv_n)


def _bwd(ctx, dloss, _dz, _dgh, _dgw, _dinv):
    if not ctx.compute_grad:
        raise RuntimeError("fused_linear_cross_entropy ran without gradients (grad mode was off)")
    gh, gw, inv_n = ctx.saved_tensors
    scale = dloss * inv_n
    grad_hidden = gh * scale.to(gh.dtype)
    # Multiplied in float32 and rounded once on store: no second (V, d) float32 temporary.
    grad_weight = torch.mul(gw, scale, out=torch.empty_like(gw, dtype=ctx.weight_dtype))
    return grad_hidden, grad_weight, None, None, None, None, None, None


_flce_op.register_autograd(_bwd, setup_context=_setup)


def fused_linear_cross_entropy_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_size: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton fused linear + cross-entropy; same contract as the reference function.

    Args:
        hidden: ``(N, d)``.
        weight: ``(V, d)`` (the unembedding / lm_head weight, same dtype as hidden).
        labels: ``(N,)`` integer labels in ``[0, V)`` or ``ignore_index``.
        ignore_index: label value that contributes nothing.
        label_smoothing: as in ``F.cross_entropy``.
        z_loss: coefficient of ``mean(lse**2)`` added to the loss.
        chunk_size: tokens per logits chunk; 0 picks ``2**28 // V`` rounded down to a multiple
            of 256 (at most 1 GiB of float32 logits; 2048 rows at V=128256).

    Returns:
        ``(loss, z)``: float32 scalars; ``loss`` is differentiable w.r.t. hidden and weight,
        ``z = mean(lse**2)`` is detached. Both are 0 when every label is ignored.

    Under autocast, hidden and weight are first cast to the autocast dtype (as ``F.linear``
    would be), and gradients flow back to them in their own dtypes.
    """
    compute_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    device = hidden.device.type
    if torch.is_autocast_enabled(device):  # cast as autocast would for the linear it replaces
        dtype = torch.get_autocast_dtype(device)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    with torch.autocast(device, enabled=False):  # the op's own matmuls pick their dtypes
        loss, z, _, _, _ = _flce_op(
            hidden, weight, labels, int(ignore_index), float(label_smoothing), float(z_loss),
            compute_grad, int(chunk_size),
        )  # fmt: skip
    return loss, z.detach()
